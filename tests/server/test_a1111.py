"""The AUTOMATIC1111 API (/sdapi/v1), driven by the real `webuiapi` client against a live server on the tiny models."""

from __future__ import annotations

import json

import pytest
import webuiapi
from PIL import Image

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD1_INPAINT_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SD35_LARGE_MODEL,
    SD35_MEDIUM_MODEL,
    SDXL_MODEL,
)
from pico.catalog.samplers import A1111_SAMPLERS
from pico.server.a1111.generation import a1111_mask
from pico.server.a1111.routes import EMPTY_LISTS
from pico.server.a1111.schemas import Img2ImgRequest
from tests.conftest import b64, png_bytes
from tests.live import Background, wait_until

SMALL = {"width": 64, "height": 64, "steps": 2}
STEPS = 8  # generations are held at their first step, so an interrupt always lands mid-run


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a")


def pico_of(image: Image.Image) -> dict:
    return json.loads(image.info["pico"])


def red(size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, (200, 40, 40))


def test_txt2img_batches_and_iterations_with_continuing_seeds(api):
    result = api.txt2img(prompt="ginger cat", negative_prompt="blurry", seed=42, cfg_scale=5, batch_size=2,
                         n_iter=2, **SMALL)
    assert [image.size for image in result.images] == [(64, 64)] * 4
    assert [pico_of(image)["Metadata"]["Seed"] for image in result.images] == [42, 43, 44, 45]
    info = result.info
    assert (info["seed"], info["all_seeds"], info["steps"], info["cfg_scale"]) == (42, [42, 43, 44, 45], 2, 5.0)
    assert info["all_prompts"] == ["ginger cat"] * 4 and info["all_negative_prompts"] == ["blurry"] * 4
    assert info["sd_model_name"] == SD1_MODEL and info["sampler_name"] == "Euler a"
    assert info["infotexts"][3] == ("ginger cat\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a, "
                                    f"Schedule type: Uniform, CFG scale: 5.0, Seed: 45, Size: 64x64, Model: {SD1_MODEL}")
    assert result.parameters["seed"] == 42 and result.parameters["enable_hr"] is False


def test_random_seed_is_reported_and_width_rounds_down_to_8(api):
    result = api.txt2img(prompt="ginger cat", seed=-1, batch_size=2, width=71, height=66, steps=2)
    assert [image.size for image in result.images] == [(64, 64)] * 2
    first = result.info["seed"]
    assert first >= 0 and result.info["all_seeds"] == [first, first + 1]
    assert [pico_of(image)["Metadata"]["Seed"] for image in result.images] == [first, first + 1]


def test_features_pico_lacks_are_accepted_and_named(api):
    result = api.txt2img(prompt="", enable_hr=True, hr_scale=2, restore_faces=True, tiling=True, styles=["any"],
                         subseed=5, subseed_strength=0.5, eta=0.5, s_churn=1, script_args=[1],
                         override_settings={"CLIP_stop_at_last_layers": 2},
                         alwayson_scripts={"ADetailer": {"args": [False]}}, **SMALL)
    assert [image.size for image in result.images] == [(128, 128)]  # the hires pass ran
    assert result.info["prompt"] == "" and pico_of(result.image)["Request"]["Phrase"] == ""
    assert len(result.info["warnings"]) == 8  # restore_faces, tiling, styles, subseed, eta, s_churn, scripts, CPU


def test_send_images_false_answers_without_images(server):
    reply = server.post("/sdapi/v1/txt2img", {"prompt": "x", "send_images": False, "seed": 3, **SMALL})
    assert reply.status == 200
    assert reply.json["images"] == [] and json.loads(reply.json["info"])["all_seeds"] == [3]


@pytest.mark.parametrize("sampler, scheduler, ran, schedule", [
    ("DPM++ 2M", "karras", "DPM++ 2M", "Karras"),
    ("DPM++ 2M", "Automatic", "DPM++ 2M", "Karras"),  # A1111 1.9+: the sampler's own schedule
    ("Euler a", "karras", "Euler a", "Uniform"),  # Diffusers has no Karras Euler a: the sampler's own
    ("dpm++ 2m", "exponential", "DPM++ 2M", "Exponential"),
])
def test_sampler_and_schedule_type_combine(api, sampler, scheduler, ran, schedule):
    result = api.txt2img(prompt="x", sampler_name=sampler, scheduler=scheduler, **SMALL)
    assert result.info["sampler_name"] == ran
    assert f"Sampler: {ran}, Schedule type: {schedule}," in result.info["infotexts"][0]


def test_img2img_resizes_the_init_image_to_width_and_height(api):
    result = api.img2img(images=[red((96, 80))], prompt="ginger cat", denoising_strength=0.5, seed=7, **SMALL)
    assert [image.size for image in result.images] == [(64, 64)]
    embedded = pico_of(result.image)
    assert embedded["Pipeline"] == "stable-diffusion-image-to-image"
    assert (embedded["Request"]["Strength"], embedded["Request"]["Seed"]) == (0.5, 7)
    assert result.info["denoising_strength"] == 0.5
    assert result.parameters["init_images"] is None and result.parameters["mask"] is None


@pytest.mark.parametrize("checkpoint", [None, SD1_INPAINT_MODEL])
def test_img2img_with_a_mask_inpaints(api, checkpoint):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    override = {"sd_model_checkpoint": checkpoint} if checkpoint else {}
    result = api.img2img(images=[red()], mask_image=mask, prompt="ginger cat", denoising_strength=1.0,
                         override_settings=override, seed=2, **SMALL)
    assert [image.size for image in result.images] == [(64, 64)]
    embedded = pico_of(result.image)
    assert embedded["Pipeline"] == "stable-diffusion-inpaint"
    assert embedded["Request"]["Model"] == (checkpoint or SD1_MODEL)


def test_mask_is_read_and_inverted_like_a1111():
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((200, 200, 200, 255), (32, 0, 64, 64))  # an opaque mask is read as grey (A1111's convert("L"))
    plain = a1111_mask(mask, Img2ImgRequest())
    assert (plain.mode, plain.size) == ("L", (64, 64))
    assert (plain.getpixel((4, 4)), plain.getpixel((60, 4))) == (0, 200)
    inverted = a1111_mask(mask, Img2ImgRequest(inpainting_mask_invert=1))
    assert (inverted.getpixel((4, 4)), inverted.getpixel((60, 4))) == (255, 55)
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    transparent.paste((0, 0, 0, 200), (0, 0, 32, 64))  # the alpha channel is the mask, rounded
    from_alpha = a1111_mask(transparent, Img2ImgRequest())
    assert (from_alpha.getpixel((4, 4)), from_alpha.getpixel((60, 4))) == (255, 0)


def test_models_list_switch_and_override(api, server):
    # the model ids, then the demo single-file checkpoints (titled "name [hash]" once a load has hashed them)
    assert sorted(title.split(" [")[0] for title in api.util_get_model_names()) == sorted(
        [SD1_MODEL, SD1_INPAINT_MODEL, SD2_MODEL, SDXL_MODEL, SD35_MEDIUM_MODEL, SD35_LARGE_MODEL, FLUX_SCHNELL_MODEL,
         FLUX_DEV_MODEL, "sdxl/tiny-sdxl.safetensors", "tiny-sd15.safetensors"])
    assert set(api.get_sd_models()[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert api.util_get_current_model() == SD1_MODEL
    try:
        api.util_set_model("StabilityAI/Stable-Diffusion-XL-Base-1.0")  # webuiapi lowercases it
        assert api.util_get_current_model() == SDXL_MODEL
        result = api.txt2img(prompt="x", **SMALL)
        assert result.info["sd_model_name"] == SDXL_MODEL
        assert pico_of(result.image)["Pipeline"] == "stable-diffusion-xl"
        overridden = api.txt2img(prompt="x", override_settings={"sd_model_checkpoint": "sd2"}, **SMALL)
        assert overridden.info["sd_model_name"] == SD2_MODEL
        assert api.util_get_current_model() == SDXL_MODEL  # the override was for that request only
        reply = server.post("/sdapi/v1/options", {"sd_model_checkpoint": "nope/nothing"})
        assert reply.status == 404
        assert reply.json["error"] == "NOT_FOUND" and reply.json["detail"].startswith("Checkpoint 'nope/nothing'")
        assert api.util_get_current_model() == SDXL_MODEL
    finally:
        assert api.set_options({"sd_model_checkpoint": SD1_MODEL}) is None  # A1111 answers null
    assert api.util_get_current_model() == SD1_MODEL


def test_samplers_and_schedulers(api):
    assert api.util_get_sampler_names() == sorted(s.name for s in A1111_SAMPLERS)
    assert api.get_samplers()[0] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert api.get_schedulers()[:3] == [
        {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0, "need_inner_model": False},
        {"name": "uniform", "label": "Uniform", "aliases": None, "default_rho": -1.0, "need_inner_model": True},
        {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False},
    ]


def test_png_info_reads_what_pico_embedded(api):
    made = api.txt2img(prompt="ginger cat", negative_prompt="blurry", seed=5, cfg_scale=5, **SMALL)
    reply = api.png_info(made.image).json
    assert reply["info"] == made.info["infotexts"][0]
    parameters = reply["parameters"]
    assert {k: parameters[k] for k in ("Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed",
                                       "Size-1", "Size-2", "Model", "Clip skip")} == {
        "Prompt": "ginger cat", "Negative prompt": "blurry", "Steps": "2", "Sampler": "Euler a", "CFG scale": "5.0",
        "Seed": "5", "Size-1": "64", "Size-2": "64", "Model": SD1_MODEL, "Clip skip": "1"}
    assert json.loads(reply["items"]["pico"])["Request"]["Seed"] == 5
    plain = api.png_info(red()).json
    assert (plain["info"], plain["items"], plain["parameters"]["Prompt"]) == ("", {}, "")


def running(api, batch: int = 0, timeout: float = 60) -> dict:
    """Poll progress until the running job's batch ``batch`` (A1111's job_no) has taken a step."""
    return wait_until(lambda: (lambda p: p if p["state"]["sampling_step"] >= 1 and p["state"]["job_no"] == batch
                               else None)(api.get_progress()), timeout, f"batch {batch} to run")


def qualities(result) -> list[int]:
    """Steps each image was denoised for (an interrupted batch stops early)."""
    return [pico_of(image)["Metadata"]["Quality"] for image in result.images]


def test_progress_then_interrupt_returns_the_images_so_far(api, server):
    assert api.get_progress()["state"]["job_count"] == 0
    with server.held() as hold:
        pending = Background(api.txt2img, prompt="x", steps=STEPS, n_iter=3, width=64, height=64)
        progress = running(api)  # held at its first step
        assert api.interrupt() == {}
        hold.release()  # the next step sees the interrupt
        result = pending.result()  # 200: webuiapi raises on any other status
    state = progress["state"]
    assert progress["progress"] == round(0.01 + 1 / STEPS, 4) and progress["current_image"] is None  # A1111's 0.01
    assert progress["eta_relative"] > 0
    assert (state["sampling_step"], state["sampling_steps"], state["job_count"], state["interrupted"]) == (
        1, STEPS, 1, False)
    assert qualities(result) == [2]  # the first of 3 batches, stopped at step 2, then no more batches
    job = server.get(f"/api/v1/jobs/{state['job']}").json
    assert (job["State"], job["Step"], job["Images"]) == ("done", 2, 1)
    idle = api.get_progress()
    assert (idle["progress"], idle["state"]["job_count"], idle["state"]["job"]) == (0, 0, "")


def test_skip_ends_the_batch_and_goes_on_to_the_next(api, server):
    with server.held() as hold:
        pending = Background(api.txt2img, prompt="x", steps=STEPS, n_iter=2, width=64, height=64, seed=11)
        job = running(api)["state"]["job"]
        assert api.skip() is None  # A1111 answers null
        hold.release()
        result = pending.result()
    assert result.info["all_seeds"] == [11, 12] and len(result.images) == 2
    assert qualities(result) == [2, STEPS]  # the first batch stopped at its next step, the second ran in full
    done = server.get(f"/api/v1/jobs/{job}").json
    assert (done["State"], done["Images"], done["Seeds"], done["Step"]) == ("done", 2, [11, 12], STEPS)


def test_a1111_generations_are_jobs_named_in_x_pico_job(server):
    reply = server.post("/sdapi/v1/txt2img", {"prompt": "x", "seed": 8, "batch_size": 2, **SMALL})
    job = server.get(f"/api/v1/jobs/{reply.header('X-Pico-Job')}").json
    assert (job["State"], job["Pipeline"], job["Images"], job["Seeds"]) == ("done", "stable-diffusion", 2, [8, 9])


def test_the_default_model_is_the_current_checkpoint(operations):
    # --default-model sd2 on that server
    assert webuiapi.WebUIApi(host="127.0.0.1", port=operations.port).util_get_current_model() == SD2_MODEL
    reply = operations.post("/sdapi/v1/txt2img", {"prompt": "x", **SMALL})
    assert json.loads(reply.json["info"])["sd_model_name"] == SD2_MODEL


@pytest.mark.parametrize("body, detail", [
    ({"steps": 0}, "steps must be between 1 and 250, got 0"),
    ({"cfg_scale": 50}, "cfg_scale must be between 0 and 10, got 50"),
    ({"n_iter": 11}, "n_iter must be between 1 and 10, got 11"),
    ({"batch_size": 6}, "batch_size must be between 1 and 5, got 6"),
    ({"width": 4096, "height": 4096}, "width x height is 4096x4096"),
    ({"sampler_name": "Nope"}, "sampler_name 'Nope' is not a sampler PICO has; known: DPM++ 2M, "),
    ({"override_settings": {"sd_model_checkpoint": "nope/nothing"}}, "Checkpoint 'nope/nothing' not found"),
])
def test_errors_take_a1111_shape(server, body, detail):
    reply = server.post("/sdapi/v1/txt2img", {"prompt": "x", **SMALL, **body})
    assert reply.status == (404 if "Checkpoint" in detail else 422)
    assert set(reply.json) == {"error", "detail", "body", "errors"}
    assert reply.json["detail"].startswith(detail), reply.json


def test_img2img_needs_an_init_image(server):
    reply = server.post("/sdapi/v1/img2img", {"prompt": "x", **SMALL})
    assert (reply.status, reply.json["detail"]) == (422, "init_images is required")
    reply = server.post("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["bm90IGFuIGltYWdl"], **SMALL})
    assert (reply.status, reply.json["error"]) == (422, "INVALID_REQUEST")
    assert reply.json["detail"].startswith("init_images is not an image")


def test_img2img_errors_speak_a1111_names_in_message_and_hint(server):
    reply = server.post("/sdapi/v1/img2img", {"prompt": "x", "init_images": [b64(png_bytes())], **SMALL, "steps": 1})
    assert (reply.status, reply.json) == (422, {
        "error": "INVALID_REQUEST", "body": "",
        "detail": "denoising_strength 0.75 with 1 step leaves no denoising step to run (int(1 x 0.75) = 0)",
        "errors": "Raise steps to at least 2, or denoising_strength to at least 1."})


def test_lists_of_features_pico_lacks_are_empty(api, server):
    assert api.get_scripts() == {"txt2img": [], "img2img": ["sd upscale"]}
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert {name: server.get(f"/sdapi/v1/{name}").json for name in EMPTY_LISTS} == {name: [] for name in EMPTY_LISTS}
    assert api.refresh_checkpoints() is None


def test_every_a1111_route_is_documented_with_its_error_shape(server):
    doc = server.get("/openapi.json").json
    operations = [op for path, ops in doc["paths"].items() if path.startswith("/sdapi/") for op in ops.values()]
    assert len(operations) >= 20
    assert all(op["tags"] == ["AUTOMATIC1111 API"] for op in operations)
    assert all(op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("/A1111Error")
               for op in operations)
    cfg = doc["components"]["schemas"]["Txt2ImgRequest"]["properties"]["cfg_scale"]
    assert (cfg["minimum"], cfg["maximum"], cfg["default"]) == (0, 10, 7.0)
