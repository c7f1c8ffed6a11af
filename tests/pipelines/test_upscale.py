"""The upscale route's runner: A1111's Lanczos and Nearest, and the SD x4 upscaler equal to Diffusers by hand."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from pico.errors import InvalidRequest
from pico.schemas.requests import UpscaleRequest
from tests.pipelines.test_reproducibility import assert_same_image, diffusers_pipeline, pixels

MAX_PIXELS = 2048 * 2048
UPSCALER = "stabilityai/stable-diffusion-x4-upscaler"


def noise_image(size=(44, 36), seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8))


def upscale_request(image: Image.Image, **body) -> UpscaleRequest:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return UpscaleRequest.parse({"ImageBase64": base64.b64encode(out.getvalue()).decode(), **body}, MAX_PIXELS)


@pytest.mark.parametrize("upscaler, resample", [("Lanczos", Image.Resampling.LANCZOS),
                                                ("Nearest", Image.Resampling.NEAREST)])
def test_resampling_upscalers_equal_a1111s(engine, upscaler, resample):
    image = noise_image()
    generation = engine.generate(upscale_request(image, Upscaler=upscaler, Scale=2.5))
    # A1111's Upscaler.upscale: resample by the scale, then Lanczos to the sides floored to a multiple of 8.
    expected = image.resize((110, 90), resample=resample).resize((104, 88), resample=Image.Resampling.LANCZOS)
    assert generation.images[0].size == (104, 88)
    assert np.array_equal(np.asarray(generation.images[0]), np.asarray(expected))
    assert generation.metadata[0]["Upscaler"] == upscaler and generation.warnings == []


def test_width_and_height_give_the_size(engine):
    generation = engine.generate(upscale_request(noise_image(), Width=64, Height=64))
    assert generation.images[0].size == (64, 64)


def test_sd_x4_equals_the_diffusers_upscaler_called_once_per_seed(engine, tiny_models):
    image = noise_image((32, 24))
    ours = engine.generate(upscale_request(image, Upscaler="SD x4", Scale=4, Phrase="a cat", Steps=3, Seed=7,
                                           Total=2, NoiseLevel=30, Precision="full"))
    pipe = diffusers_pipeline(tiny_models, UPSCALER)
    assert [i.size for i in ours.images] == [(128, 96)] * 2
    # One Diffusers call per seed: in one call of two images Diffusers noises the input with the first generator only.
    for mine, seed in zip(pixels(ours.images), (7, 8)):
        theirs = pipe(prompt="a cat", image=image, num_inference_steps=3, guidance_scale=9.0, noise_level=30,
                      generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        assert_same_image(mine, np.asarray(theirs))
    assert [m["Seed"] for m in ours.metadata] == [7, 8]


@pytest.mark.parametrize("phrase", ["a cat", "a (cat:1.3)"], ids=["text", "weighted"])
def test_image_i_of_an_sd_x4_request_is_seed_plus_i(engine, phrase):
    body = {"Upscaler": "SD x4", "Scale": 4, "Phrase": phrase, "Steps": 3, "NoiseLevel": 30}
    together = engine.generate(upscale_request(noise_image((32, 24)), Seed=7, Total=2, **body))
    alone = engine.generate(upscale_request(noise_image((32, 24)), Seed=8, **body))
    assert_same_image(pixels(together.images)[1], pixels(alone.images)[0])


def test_sd_x4_output_is_resized_to_the_scale_asked(engine):
    generation = engine.generate(upscale_request(noise_image((32, 24)), Upscaler="SD x4", Scale=2, Steps=2))
    assert generation.images[0].size == (64, 48)


@pytest.mark.parametrize("body, field", [
    ({"Total": 2}, "Total"),
    ({"Scale": 8}, "Scale"),
    ({"Upscaler": "ESRGAN"}, "Upscaler"),
])
def test_refused(body, field):
    with pytest.raises(InvalidRequest) as caught:
        upscale_request(noise_image((600, 600)), **body)
    assert caught.value.field == field


def test_deriving_keeps_the_upscalers_weights_in_half_precision(tiny_models):
    from diffusers import StableDiffusionUpscalePipeline

    from pico.pipelines.registry import find_runner

    base = StableDiffusionUpscalePipeline.from_pretrained(tiny_models / UPSCALER, torch_dtype=torch.float16)
    derived = find_runner("upscale").derive(base)
    assert derived is not base and derived.unet is base.unet and derived.config.max_noise_level == 350
    assert {module.dtype for module in (base.unet, base.vae, base.text_encoder)} == {torch.float16}
