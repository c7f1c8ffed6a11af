"""Hires fix, upscaling, inpainting and prompt weighting through the A1111 routes, equal to PICO's own routes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.conftest import b64

SMALL = {"width": 64, "height": 64, "steps": 3, "seed": 23}


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a")


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def pico(server, route: str, body: dict) -> list[np.ndarray]:
    reply = server.post(f"/api/v1/{route}", body)
    assert reply.status == 200, reply.json
    return [np.asarray(decode(image["ImageBase64"])) for image in reply.json["Images"]]


def noise(size=(64, 64), seed=1) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8))


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return b64(out.getvalue())


def test_hires_fix_gives_the_target_size_and_equals_picos_hires(api, server):
    result = api.txt2img(prompt="ginger cat", enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (bicubic)",
                         denoising_strength=0.6, hr_second_pass_steps=2, batch_size=2, **SMALL)
    assert [image.size for image in result.images] == [(96, 96)] * 2
    assert (result.info["width"], result.info["extra_generation_params"]["Hires upscaler"]) == (64, "Latent (bicubic)")
    assert result.info["infotexts"][0].endswith("Denoising strength: 0.6, Hires upscale: 1.5, Hires steps: 2, "
                                                "Hires upscaler: Latent (bicubic)")
    ours = pico(server, "stable-diffusion", {
        "Phrase": "ginger cat", "Seed": 23, "Steps": 3, "Width": 64, "Height": 64, "Total": 2, "GuidanceScale": 7.0,
        "Scheduler": "Euler a Uniform",
        "Hires": {"Scale": 1.5, "Upscaler": "Latent (bicubic)", "Strength": 0.6, "Steps": 2}})
    for theirs, mine in zip(result.images, ours):
        assert np.array_equal(np.asarray(theirs), mine)


def test_hires_resize_sampler_and_prompts(api):
    result = api.txt2img(prompt="cat", enable_hr=True, hr_resize_x=128, hr_resize_y=96, hr_upscaler="Lanczos",
                         hr_sampler_name="DPM++ 2M", hr_prompt="oil painting", denoising_strength=0.5, **SMALL)
    assert result.image.size == (128, 96)
    hires = webuiapi_pico(result)["Request"]["Hires"]
    assert (hires["Scheduler"], hires["Phrase"], hires["Width"], hires["Height"]) == (
        "DPM++ 2M Karras", "oil painting", 128, 96)


def webuiapi_pico(result) -> dict:
    import json

    return json.loads(result.image.info["pico"])


def test_an_upscaler_pico_lacks_becomes_lanczos_with_a_warning(api):
    result = api.txt2img(prompt="cat", enable_hr=True, hr_upscaler="R-ESRGAN 4x+", **SMALL)
    assert result.image.size == (128, 128)
    assert result.info["warnings"][0].startswith("hr_upscaler 'R-ESRGAN 4x+' is not available in PICO; Lanczos")


def test_weighted_prompts_and_clip_skip_equal_picos_route(api, server):
    prompt = "a (ginger:1.4) cat, [blurry], (masterpiece) BREAK on a [red:blue:0.5] sofa"
    result = api.txt2img(prompt=prompt, negative_prompt="(ugly:1.2)", cfg_scale=6,
                         override_settings={"CLIP_stop_at_last_layers": 2}, **SMALL)
    ours = pico(server, "stable-diffusion", {"Phrase": prompt, "NegativePhrase": "(ugly:1.2)", "Seed": 23, "Steps": 3,
                                             "Width": 64, "Height": 64, "GuidanceScale": 6.0, "ClipSkip": 2,
                                             "Scheduler": "Euler a Uniform"})
    assert np.array_equal(np.asarray(result.image), ours[0])
    literal = pico(server, "stable-diffusion", {"Phrase": prompt, "NegativePhrase": "(ugly:1.2)", "Seed": 23,
                                                "Steps": 3, "Width": 64, "Height": 64, "GuidanceScale": 6.0,
                                                "ClipSkip": 2, "Scheduler": "Euler a Uniform",
                                                "PromptSyntax": "literal"})
    assert not np.array_equal(literal[0], ours[0])


def test_inpainting_keeps_the_unmasked_pixels_and_blurs_the_edge(api):
    image = noise()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    sharp = api.img2img(images=[image], mask_image=mask, prompt="x", denoising_strength=1.0, mask_blur=0,
                        inpaint_full_res=False, **SMALL)
    blurred = api.img2img(images=[image], mask_image=mask, prompt="x", denoising_strength=1.0, mask_blur=4,
                          inpaint_full_res=False, **SMALL)
    original, kept, soft = np.asarray(image), np.asarray(sharp.image), np.asarray(blurred.image)
    outside = np.asarray(mask) == 0
    assert np.array_equal(kept[outside], original[outside]) and not np.array_equal(kept[~outside], original[~outside])
    assert np.array_equal(soft[0:5], original[0:5])  # beyond the blur's reach (10 pixels): the input's pixels
    assert not np.array_equal(soft[14:18, 14:50], kept[14:18, 14:50])  # at its edge the blur mixes them
    assert webuiapi_pico(blurred)["Request"]["MaskBlur"] == 4


def test_only_masked_inpainting_returns_the_input_size(api):
    image = noise((96, 80))
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (40, 30, 60, 50))
    result = api.img2img(images=[image], mask_image=mask, prompt="x", denoising_strength=1.0, inpaint_full_res=True,
                         inpaint_full_res_padding=4, **SMALL)  # webuiapi's defaults: only masked, mask_blur 4
    assert result.image.size == (96, 80)
    far = np.ones((80, 96), dtype=bool)
    far[20:60, 30:70] = False  # the mask and the reach of its blur
    assert np.array_equal(np.asarray(result.image)[far], np.asarray(image)[far])
    assert not np.array_equal(np.asarray(result.image)[30:50, 40:60], np.asarray(image)[30:50, 40:60])
    request = webuiapi_pico(result)["Request"]
    assert (request["InpaintArea"], request["MaskPadding"], request["MaskedContent"]) == ("masked", 4, "fill")


def test_sd_upscale_script_tiles(api, server):
    result = api.img2img(images=[noise()], prompt="x", denoising_strength=0.4, script_name="SD upscale",
                         script_args=["", 16, 1, 2], batch_size=2, n_iter=2, **SMALL)
    assert [image.size for image in result.images] == [(128, 128)] * 2
    assert result.info["all_seeds"] == [23, 24]
    reply = server.post("/sdapi/v1/img2img", {**SMALL, "init_images": [png_b64(noise())], "script_name": "sd upscale",
                                              "script_args": ["", 16, "Nearest", 2], "denoising_strength": 0.4})
    job = server.get(f"/api/v1/jobs/{reply.header('X-Pico-Job')}").json
    assert job["Seeds"] == list(range(23, 32))  # 3 x 3 tiles of 64 in 128x128, 16 of overlap: seed + tile index


def test_extras_single_and_batch(api):
    single = api.extra_single_image(noise((40, 48)), upscaler_1="Nearest", upscaling_resize=2)
    assert single.image.size == (80, 96)
    batch = api.extra_batch_images([noise((40, 48)), noise((32, 32))], upscaler_1="Lanczos", resize_mode=1,
                                   upscaling_resize_w=64, upscaling_resize_h=64)
    assert [image.size for image in batch.images] == [(64, 64), (64, 64)]
    x4 = api.extra_single_image(noise((16, 16)), upscaler_1="SD x4", upscaling_resize=4)
    assert x4.image.size == (64, 64)
    warned = api.extra_single_image(noise((16, 16)), upscaler_1="Lanczos", gfpgan_visibility=0.5)
    assert "GFPGAN and CodeFormer (face restoration) were not applied" in warned.info


def test_upscaler_lists(api):
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest", "SD x4"]
    assert [m["name"] for m in api.get_latent_upscale_modes()] == [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
        "Latent (nearest-exact)"]


def test_picos_upscale_route(server):
    reply = server.post("/api/v1/upscale", {"ImageBase64": png_b64(noise((40, 48))), "Scale": 2})
    assert reply.status == 200 and decode(reply.json["Images"][0]["ImageBase64"]).size == (80, 96)
    assert reply.json["Images"][0]["Metadata"]["Upscaler"] == "Lanczos"
    reply = server.post("/api/v1/upscale", {"ImageBase64": png_b64(noise((16, 16))), "Upscaler": "SD x4",
                                            "Phrase": "cat", "Scale": 4, "Steps": 2, "Total": 2})
    assert reply.status == 200 and [decode(i["ImageBase64"]).size for i in reply.json["Images"]] == [(64, 64)] * 2
