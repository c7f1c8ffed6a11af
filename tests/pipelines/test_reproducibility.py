"""Same request, same pixels: PICO against plain Diffusers called by hand, and image i = Seed+i everywhere.

Each test reads as the promise it checks. The hand-made Diffusers calls load the same tiny
model folders with ``from_pretrained`` and pass exactly what a user would.

The same request (same Total) gives bit-identical pixels. The same seed in a batch of another
size is the same image up to the rounding of batched arithmetic: the kernels sum in another
order for another batch size, which moves a handful of pixel values by one (measured: at most
2 of 12288 values, by 1). ``assert_same_image`` allows exactly that and no more; the defects it
guards against moved every pixel (a mean difference of 4 to 42).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pico.catalog.samplers import SCHEDULER_NAMES, SCHEDULERS
from pico.schemas.requests import (
    StableDiffusion2Request,
    StableDiffusionImageToImageRequest,
    StableDiffusionImageVariationRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)

MAX_PIXELS = 2048 * 2048


def request(cls, **body):
    body.setdefault("Steps", 3)
    return cls.parse(body, MAX_PIXELS)


def pixels(images) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


def assert_same_image(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal, or equal but for batched-arithmetic rounding: values off by at most 2 in at most 0.1 % of them."""
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 2 and np.count_nonzero(difference) <= difference.size // 1000, (
        f"{np.count_nonzero(difference)} of {difference.size} values differ, by up to {difference.max()}")


def diffusers_pipeline(tiny_models, model_id: str):
    """The model folder loaded by hand, as a Diffusers user would."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_models / model_id, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_scheduler(pipe, name: str):
    import diffusers

    class_name, options = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **options)
    return pipe


FAMILIES = [
    (StableDiffusionRequest, "runwayml/stable-diffusion-v1-5", "Euler a"),
    (StableDiffusion2Request, "stabilityai/stable-diffusion-2-1", "DPM++ 2M"),
    (StableDiffusionXlRequest, "stabilityai/stable-diffusion-xl-base-1.0", "DPM++ 2M Karras"),
]


@pytest.mark.parametrize("cls, model, scheduler", FAMILIES, ids=["sd1", "sd2", "sdxl"])
def test_text_to_image_equals_a_plain_diffusers_call(engine, tiny_models, cls, model, scheduler):
    body = dict(Phrase="ginger cat", NegativePhrase="blurry", Seed=1234, Steps=4, GuidanceScale=6.0,
                Width=64, Height=96, Scheduler=scheduler, Total=2)
    ours = engine.generate(request(cls, **body))

    pipe = with_scheduler(diffusers_pipeline(tiny_models, model), scheduler)
    theirs = pipe(prompt="ginger cat", negative_prompt="blurry", num_inference_steps=4, guidance_scale=6.0,
                  width=64, height=96, num_images_per_prompt=2,
                  generator=[torch.Generator("cpu").manual_seed(s) for s in (1234, 1235)]).images
    assert [image.size for image in ours.images] == [(64, 96), (64, 96)]
    for mine, reference in zip(pixels(ours.images), pixels(theirs)):
        np.testing.assert_array_equal(mine, reference)


@pytest.mark.parametrize("scheduler", ["DPM++ SDE", "DPM++ SDE Karras"])
@pytest.mark.parametrize("cls", [StableDiffusionRequest, StableDiffusionXlRequest])
def test_sde_samplers_follow_the_seed(engine, cls, scheduler):
    first = engine.generate(request(cls, Phrase="cat", Seed=77, Scheduler=scheduler, Total=2))
    again = engine.generate(request(cls, Phrase="cat", Seed=77, Scheduler=scheduler, Total=2))
    second_alone = engine.generate(request(cls, Phrase="cat", Seed=78, Scheduler=scheduler))
    for a, b in zip(pixels(first.images), pixels(again.images)):
        np.testing.assert_array_equal(a, b)
    assert_same_image(pixels(first.images)[1], pixels(second_alone.images)[0])
    assert not np.array_equal(*pixels(first.images))


def test_an_sde_sampler_is_not_disturbed_by_the_global_torch_rng(engine):
    body = dict(Phrase="cat", Seed=5, Scheduler="DPM++ SDE")
    torch.manual_seed(1)
    first = engine.generate(request(StableDiffusionRequest, **body))
    torch.manual_seed(2)
    second = engine.generate(request(StableDiffusionRequest, **body))
    np.testing.assert_array_equal(pixels(first.images)[0], pixels(second.images)[0])


def inputs(image_b64, mask_b64):
    return {
        "image-to-image": (StableDiffusionImageToImageRequest, {"Phrase": "cat", "ImageBase64": image_b64}),
        "inpaint": (StableDiffusionInpaintRequest,
                    {"Phrase": "cat", "ImageBase64": image_b64, "MaskImageBase64": mask_b64}),
        "variation": (StableDiffusionImageVariationRequest, {"ImageBase64": image_b64}),
    }


SEED_CASES = [
    ("stable-diffusion", StableDiffusionRequest, {"Phrase": "cat"}),
    ("stable-diffusion-2", StableDiffusion2Request, {"Phrase": "cat"}),
    ("stable-diffusion-xl", StableDiffusionXlRequest, {"Phrase": "cat"}),
]


@pytest.mark.parametrize("route, cls, body", SEED_CASES, ids=[c[0] for c in SEED_CASES])
def test_image_i_of_a_text_to_image_request_is_seed_plus_i(engine, route, cls, body):
    together = engine.generate(request(cls, Seed=100, Total=3, **body))
    alone = engine.generate(request(cls, Seed=102, **body))
    assert_same_image(pixels(together.images)[2], pixels(alone.images)[0])


@pytest.mark.parametrize("model", [None, "runwayml/stable-diffusion-v1-5", "stabilityai/stable-diffusion-xl-base-1.0"],
                         ids=["inpainting-model", "sd1", "sdxl"])
@pytest.mark.parametrize("strength", [1.0, 0.7])
def test_image_i_of_an_inpainting_request_is_seed_plus_i(engine, image_b64, mask_b64, model, strength):
    body = {"Phrase": "cat", "ImageBase64": image_b64, "MaskImageBase64": mask_b64, "Strength": strength,
            "Steps": 4, **({"Model": model} if model else {})}
    together = engine.generate(request(StableDiffusionInpaintRequest, Seed=100, Total=2, **body))
    alone = engine.generate(request(StableDiffusionInpaintRequest, Seed=101, **body))
    assert_same_image(pixels(together.images)[1], pixels(alone.images)[0])


@pytest.mark.parametrize("kind", ["image-to-image", "variation"])
def test_image_i_of_an_image_request_is_seed_plus_i(engine, image_b64, mask_b64, kind):
    cls, body = inputs(image_b64, mask_b64)[kind]
    together = engine.generate(request(cls, Seed=100, Total=2, **body))
    alone = engine.generate(request(cls, Seed=101, **body))
    assert_same_image(pixels(together.images)[1], pixels(alone.images)[0])


def test_inpainting_equals_a_plain_diffusers_call_per_image(engine, tiny_models, image_b64, mask_b64):
    ours = engine.generate(request(StableDiffusionInpaintRequest, Phrase="cat", ImageBase64=image_b64,
                                   MaskImageBase64=mask_b64, Seed=9, Total=2, Strength=0.7, Steps=4))
    pipe = diffusers_pipeline(tiny_models, "runwayml/stable-diffusion-inpainting")
    from pico.schemas.images import decode_image

    image = decode_image(image_b64, "ImageBase64", MAX_PIXELS)
    mask = decode_image(mask_b64, "MaskImageBase64", MAX_PIXELS, "L")
    for index, seed in enumerate((9, 10)):
        theirs = pipe(prompt="cat", image=image, mask_image=mask, strength=0.7, num_inference_steps=4,
                      width=64, height=64, generator=[torch.Generator("cpu").manual_seed(seed)]).images[0]
        assert_same_image(pixels(ours.images)[index], np.asarray(theirs))


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_sdxl_gives_the_same_pixels_alone_and_in_a_batch(engine, negative):
    mine = request(StableDiffusionXlRequest, Phrase="cat", NegativePhrase=negative, Seed=3)
    other = request(StableDiffusionXlRequest, Phrase="dog", NegativePhrase=negative, Seed=50)
    alone = engine.generate(mine)
    batched, _ = engine.generate_batch([mine, other])
    assert_same_image(pixels(alone.images)[0], pixels(batched.images)[0])


def test_an_empty_negative_phrase_is_not_a_missing_one_on_sdxl(engine):
    empty = engine.generate(request(StableDiffusionXlRequest, Phrase="cat", NegativePhrase="", Seed=3))
    missing = engine.generate(request(StableDiffusionXlRequest, Phrase="cat", Seed=3))
    assert not np.array_equal(pixels(empty.images)[0], pixels(missing.images)[0])


@pytest.mark.parametrize("scheduler", ["Heun", "DPM2", "DPM++ SDE", "Euler", "PNDM", "DPM2 a"])
def test_progress_counts_the_steps_asked_for_on_every_sampler(engine, scheduler):
    seen = []
    engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=1, Steps=4, Scheduler=scheduler),
                    on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_every_sampler_is_reproducible(engine):
    for name in SCHEDULER_NAMES:
        first = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=8, Steps=1, Scheduler=name))
        again = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=8, Steps=1, Scheduler=name))
        np.testing.assert_array_equal(pixels(first.images)[0], pixels(again.images)[0], err_msg=name)


@pytest.mark.parametrize("cls", [StableDiffusionRequest, StableDiffusionXlRequest])
def test_previews_are_small_images_of_each_image_as_it_forms(engine, cls):
    previews = []
    plain = engine.generate(request(cls, Phrase="cat", Seed=4, Total=2, Steps=3))
    watched = engine.generate(request(cls, Phrase="cat", Seed=4, Total=2, Steps=3),
                              on_preview=lambda done, render: previews.append((done, render())))
    assert [done for done, _ in previews] == [1, 2, 3]
    assert all(len(images) == 2 and images[0].size == (8, 8) and images[0].mode == "RGB" for _, images in previews)
    assert not np.array_equal(np.asarray(previews[0][1][0]), np.asarray(previews[-1][1][0]))
    for a, b in zip(pixels(plain.images), pixels(watched.images)):  # watching changes nothing
        np.testing.assert_array_equal(a, b)
