"""The bodies A1111 clients really send, replayed as they are: A1111's own test suite, webuiapi, pydantic types.

The A1111 bodies are those of AUTOMATIC1111/stable-diffusion-webui's ``test/test_txt2img.py``,
``test_img2img.py``, ``test_extras.py`` and ``test_utils.py``, every field as they carry it.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import webuiapi
from PIL import Image

from tests.conftest import b64, png_bytes

PRECISION = "Precision 'half' is not available on the CPU; ran in float32 (Precision 'full')."


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a")


def txt2img_body() -> dict:
    """A1111's simple_txt2img_request (test/test_txt2img.py)."""
    return {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0,
            "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1, "negative_prompt": "",
            "prompt": "example prompt", "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
            "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
            "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}


def img2img_body() -> dict:
    """A1111's simple_img2img_request (test/test_img2img.py)."""
    return {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
            "include_init_images": False, "init_images": [b64(png_bytes())], "inpaint_full_res": False,
            "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False, "mask": None,
            "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {}, "prompt": "example prompt",
            "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
            "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
            "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}


def mask_b64() -> str:
    mask = Image.new("RGB", (64, 64), (0, 0, 0))
    mask.paste((255, 255, 255), (16, 16, 48, 48))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def sizes(reply) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(base64.b64decode(image))).size for image in reply.json["images"]]


def info(reply) -> dict:
    return json.loads(reply.json["info"])


@pytest.mark.parametrize("change, count, size, warned", [
    ({}, 1, (64, 64), []),
    ({"negative_prompt": "example negative prompt"}, 1, (64, 64), []),
    ({"prompt": "((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3], [alt|alt1]"}, 1, (64, 64), []),
    ({"height": 128}, 1, (64, 128), []),
    ({"enable_hr": True}, 1, (128, 128), []),
    ({"tiling": True}, 1, (64, 64), ["tiling was not applied: PICO makes no seamless tiles."]),
    ({"restore_faces": True}, 1, (64, 64), ["restore_faces was not applied: PICO has no face restoration."]),
    ({"sampler_index": "PLMS"}, 1, (64, 64), []),
    ({"sampler_index": "DDIM"}, 1, (64, 64), []),
    ({"sampler_index": "UniPC"}, 1, (64, 64), []),
    ({"n_iter": 2}, 2, (64, 64), []),
    ({"batch_size": 2}, 2, (64, 64), []),
])
def test_a1111s_own_txt2img_requests(server, change, count, size, warned):
    reply = server.post("/sdapi/v1/txt2img", {**txt2img_body(), **change})
    assert reply.status == 200, reply.json
    assert sizes(reply) == [size] * count
    assert info(reply).get("warnings") == [*warned, PRECISION]


@pytest.mark.parametrize("change", [
    {}, {"mask": mask_b64()}, {"mask": mask_b64(), "inpainting_mask_invert": True},
    {"script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]},
])
def test_a1111s_own_img2img_requests(server, change):
    reply = server.post("/sdapi/v1/img2img", {**img2img_body(), **change})
    assert reply.status == 200, reply.json
    assert sizes(reply) == [(128, 128) if "script_name" in change else (64, 64)]
    assert info(reply)["warnings"] == [PRECISION]


def test_a1111s_own_extras_requests(server):
    image = b64(png_bytes((64, 64)))
    reply = server.post("/sdapi/v1/extra-single-image", {
        "resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0, "codeformer_visibility": 0,
        "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 128, "upscaling_resize_h": 128,
        "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0,
        "image": image})
    assert reply.status == 200
    assert Image.open(io.BytesIO(base64.b64decode(reply.json["image"]))).size == (128, 128)
    assert reply.json["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"
    plain = server.post("/sdapi/v1/extra-single-image", {"image": image})  # upscaler_1 None: the image as it is
    assert plain.status == 200 and base64.b64decode(plain.json["image"]).startswith(b"\x89PNG")


@pytest.mark.parametrize("url", ["cmd-flags", "samplers", "upscalers", "sd-models", "hypernetworks",
                                 "face-restorers", "realesrgan-models", "prompt-styles", "embeddings", "schedulers",
                                 "latent-upscale-modes", "sd-vae", "scripts", "script-info", "options"])
def test_a1111s_own_list_requests(server, url):
    assert server.get(f"/sdapi/v1/{url}").status == 200


def test_booleans_numbers_and_strings_as_a1111s_pydantic_converts_them(server):
    reply = server.post("/sdapi/v1/img2img", {
        **img2img_body(), "inpainting_mask_invert": 0, "mask": mask_b64(), "steps": "3", "width": 64.0,
        "height": "64", "restore_faces": "false", "tiling": 0, "batch_size": True, "cfg_scale": 7,
        "inpaint_full_res": 1, "denoising_strength": "0.75", "seed": "5", "include_init_images": "no"})
    assert reply.status == 200, reply.json
    assert info(reply)["all_seeds"] == [5] and reply.json["parameters"]["init_images"] is None
    assert reply.json["parameters"]["steps"] == 3 and reply.json["parameters"]["inpainting_mask_invert"] == 0


@pytest.mark.parametrize("body, detail", [
    ({"steps": "0"}, "steps must be between 1 and 250, got 0"),
    ({"enable_hr": 2}, "enable_hr must be true or false, got 2"),
    ({"hr_scale": 9, "enable_hr": True}, "hr_scale must be between 1 and 4, got 9"),
    ({"sampler_name": "Restart"}, "sampler_name 'Restart': Diffusers has no scheduler for this A1111 sampler"),
    ({"script_name": "x/y/z plot"}, "Script 'x/y/z plot' not found"),
])
def test_what_a1111_refuses_or_pico_cannot_do_is_a_422(server, body, detail):
    reply = server.post("/sdapi/v1/txt2img", {**txt2img_body(), **body})
    assert reply.status == 422 and reply.json["detail"].startswith(detail), reply.json


def test_webuiapis_defaults_warn_of_nothing(api):
    result = api.txt2img(prompt="x", steps=2, width=64, height=64, seed=1)
    assert result.info["warnings"] == [PRECISION]
    assert result.info["sampler_name"] == "Euler a" and result.info["extra_generation_params"] == {
        "Schedule type": "Uniform"}
    inpainted = api.img2img(images=[Image.new("RGB", (64, 64), (200, 40, 40))], prompt="x", steps=2, width=64,
                            height=64, mask_image=Image.new("L", (64, 64), 255), seed=1)
    assert inpainted.info["warnings"] == [PRECISION]


def test_what_pico_does_not_apply_is_named(api):
    result = api.txt2img(prompt="x", steps=2, width=64, height=64, styles=["cinematic"], subseed_strength=0.3,
                         s_churn=1, sampler_name="DDIM", eta=0.5, save_images=True,
                         alwayson_scripts={"ADetailer": {"args": [True]}}, seed_resize_from_w=32,
                         seed_resize_from_h=32)
    assert result.info["warnings"][:-1] == [
        "styles cinematic were not applied: PICO has no prompt styles.",
        "subseed and subseed_strength (variation seeds) were not applied.",
        "seed_resize_from_w and _h were not applied.",
        "eta 0.5 was not applied: DDIM ran with Diffusers' eta, 0.",
        "s_churn (and s_tmin, s_tmax) were not applied.",
        "save_images: PICO saves nothing on the server; the images are in the answer.",
        "alwayson_scripts ADetailer were not run: PICO has no extensions.",
    ]


@pytest.mark.parametrize("sampler, scheduler, ran, schedule", [
    ("DPM++ 2M", "Automatic", "DPM++ 2M", "Karras"),
    ("DPM++ 2M SDE", "automatic", "DPM++ 2M SDE", "Exponential"),
    ("DPM++ 2M Karras", "automatic", "DPM++ 2M", "Karras"),
    ("PLMS", "automatic", "PLMS", "Automatic"),
    ("Euler", "beta", "Euler", "Beta"),
    ("LCM", "sgm_uniform", "LCM", "SGM Uniform"),
])
def test_samplers_and_schedule_types(api, sampler, scheduler, ran, schedule):
    result = api.txt2img(prompt="x", steps=3, width=64, height=64, sampler_name=sampler, scheduler=scheduler)
    assert (result.info["sampler_name"], result.info["extra_generation_params"]["Schedule type"]) == (ran, schedule)
    expected = f"Sampler: {ran}, Schedule type: {schedule}, " if schedule != "Automatic" else f"Sampler: {ran}, "
    assert expected in result.info["infotexts"][0]


def test_sampler_and_schedule_lists(api):
    assert [s["name"] for s in api.get_samplers()] == [
        "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
        "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM"]
    assert api.util_get_scheduler_names() == ["automatic", "beta", "exponential", "karras", "sgm_uniform", "uniform"]


def test_sd3_and_flux_checkpoints_take_their_flow_matching_samplers(api):
    sd3 = {"override_settings": {"sd_model_checkpoint": "stabilityai/stable-diffusion-3.5-medium"}}
    euler = api.txt2img(prompt="x", steps=2, width=64, height=64, sampler_name="Euler", **sd3)
    assert euler.image.size == (64, 64) and euler.info["sampler_name"] == "Euler"
    assert json.loads(euler.image.info["pico"])["Request"]["Scheduler"] == "Euler"
    other = api.txt2img(prompt="x", steps=2, width=64, height=64, sampler_name="DPM++ 2M", enable_hr=True, **sd3)
    assert other.image.size == (64, 64)
    assert other.info["warnings"][:2] == [
        "DPM++ 2M was not applied: Stable Diffusion 3.x models run Euler or UniPC (flow matching); the model's own ran.",
        "The hires fix was not applied: PICO has none for SD 3 and FLUX models."]
