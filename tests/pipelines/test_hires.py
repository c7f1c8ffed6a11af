"""Hires fix: two passes, and the second equals an image-to-image call made by hand on the first's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pico.catalog.samplers import SCHEDULERS
from pico.pipelines.hires import second_pass_schedule
from pico.pipelines.resize import resize_image
from pico.schemas.requests import StableDiffusionRequest, StableDiffusionXlRequest
from tests.pipelines.test_reproducibility import assert_same_image, diffusers_pipeline, pixels, request

SD1 = "runwayml/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def generators(seeds):
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def by_hand(tiny_models, model, *, seeds, steps, size, upscale, strength, second_steps, scheduler=None,
            second_scheduler=None, phrase="ginger cat", second_phrase=None):
    """Both passes with plain Diffusers: text-to-image, ``upscale`` of its output, image-to-image from_pipe.

    The second pass runs ``second_steps`` steps as A1111's does: Diffusers is given A1111's schedule
    length and the strength at which it runs exactly that many.
    """
    import diffusers
    from diffusers import AutoPipelineForImage2Image

    pipe = diffusers_pipeline(tiny_models, model)
    if scheduler:
        class_name, options = SCHEDULERS[scheduler]
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **options)
    model_config = pipe.scheduler.config if not scheduler else diffusers_pipeline(tiny_models, model).scheduler.config
    latent = upscale.__name__ == "latent"
    first = pipe(prompt=phrase, num_inference_steps=steps, width=size[0], height=size[1], guidance_scale=7.5,
                 num_images_per_prompt=len(seeds), generator=generators(seeds),
                 output_type="latent" if latent else "pil").images
    second = AutoPipelineForImage2Image.from_pipe(pipe)
    name = second_scheduler or scheduler
    if name:
        class_name, options = SCHEDULERS[name]
        second.scheduler = getattr(diffusers, class_name).from_config(model_config, **options)
    else:
        second.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    total, diffusers_strength = second_pass_schedule(second_steps, strength)
    return second(prompt=second_phrase or phrase, image=upscale(first), strength=diffusers_strength,
                  num_inference_steps=total, guidance_scale=7.5, num_images_per_prompt=len(seeds),
                  generator=generators(seeds)).images


@pytest.mark.parametrize("steps, strength, total, runs", [
    (20, 0.5, 40, 20), (20, 0.7, 28, 20), (20, 1.0, 20, 20), (4, 0.6, 6, 4), (20, 0.01, 1000, 20)])
def test_the_second_pass_runs_its_steps_on_a1111s_longer_schedule(steps, strength, total, runs):
    n, diffusers_strength = second_pass_schedule(steps, strength)
    assert (n, int(n * diffusers_strength)) == (total, runs)


def latent(size):
    def latent(latents):
        return torch.nn.functional.interpolate(latents, size=(size[1] // 8, size[0] // 8), mode="bilinear")
    return latent


@pytest.mark.parametrize("cls, model", [(StableDiffusionRequest, SD1), (StableDiffusionXlRequest, SDXL)],
                         ids=["sd1", "sdxl"])
def test_latent_hires_second_pass_equals_image_to_image_by_hand(engine, tiny_models, cls, model):
    ours = engine.generate(request(cls, Phrase="ginger cat", Seed=21, Total=2, Steps=3, Width=64, Height=64,
                                   GuidanceScale=7.5, Hires={"Scale": 1.5, "Steps": 4, "Strength": 0.6}))
    assert [image.size for image in ours.images] == [(96, 96)] * 2
    theirs = by_hand(tiny_models, model, seeds=[21, 22], steps=3, size=(64, 64), upscale=latent((96, 96)),
                     strength=0.6, second_steps=4)
    for mine, expected in zip(pixels(ours.images), pixels(theirs)):
        assert_same_image(mine, expected)
    assert ours.metadata[0]["Hires"]["Upscaler"] == "Latent" and ours.metadata[1]["Seed"] == 22


def test_image_upscaler_hires_equals_a1111_resize_then_image_to_image(engine, tiny_models):
    def lanczos(images):
        return [resize_image(0, image, 160, 128, "Lanczos") for image in images]

    ours = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat", Seed=5, Steps=3, Width=80, Height=64,
                                   GuidanceScale=7.5, Scheduler="DPM++ 2M Karras",
                                   Hires={"Scale": 2, "Upscaler": "Lanczos", "Strength": 0.5,
                                          "Scheduler": "Euler a", "Phrase": "oil painting"}))
    theirs = by_hand(tiny_models, SD1, seeds=[5], steps=3, size=(80, 64), upscale=lanczos, strength=0.5,
                     second_steps=3, scheduler="DPM++ 2M Karras", second_scheduler="Euler a",
                     second_phrase="oil painting")
    assert ours.images[0].size == (160, 128)
    assert_same_image(pixels(ours.images)[0], pixels(theirs)[0])


def test_a_target_of_another_aspect_is_covered_then_cropped_in_the_middle(engine):
    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=1, Steps=2, Width=64, Height=64,
                                         Hires={"Width": 128, "Height": 96, "Strength": 0.5}))
    assert generation.images[0].size == (128, 96)
    upscaled = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=1, Steps=2, Width=64, Height=64,
                                       Hires={"Width": 128, "Upscaler": "Lanczos", "Strength": 0.5}))
    assert upscaled.images[0].size == (128, 128)


def test_the_second_pass_changes_the_image_and_its_phrase_counts(engine):
    body = dict(Phrase="cat", Seed=9, Steps=3, Width=64, Height=64)
    plain = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Strength": 0.5}))
    first = engine.generate(request(StableDiffusionRequest, **body))
    other = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Strength": 0.5,
                                                                           "Phrase": "dog"}))
    assert not np.array_equal(pixels(plain.images)[0], pixels(first.images)[0])
    assert not np.array_equal(pixels(plain.images)[0], pixels(other.images)[0])
    again = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Strength": 0.5}))
    assert np.array_equal(pixels(plain.images)[0], pixels(again.images)[0])


def test_an_interrupted_first_pass_skips_the_second_as_a1111_does(engine):
    steps = []

    def interrupt(done, total):
        steps.append((done, total))
        return True

    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=3, Steps=4, Width=64, Height=64,
                                         Hires={"Scale": 2}), on_step=interrupt)
    assert [image.size for image in generation.images] == [(64, 64)] and steps == [(1, 4)]


def test_strength_0_gives_the_upscaled_first_pass(engine):
    first = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=3, Steps=2, Width=64, Height=64))
    upscaled = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=3, Steps=2, Width=64, Height=64,
                                       Hires={"Scale": 2, "Upscaler": "Nearest", "Strength": 0}))
    expected = resize_image(0, first.images[0], 128, 128, "Nearest")
    assert np.array_equal(pixels(upscaled.images)[0], np.asarray(expected))


def test_hires_requests_do_not_share_a_batched_call(engine):
    plain = request(StableDiffusionRequest, Phrase="cat", Width=64, Height=64)
    hires = request(StableDiffusionRequest, Phrase="cat", Width=64, Height=64, Hires={"Scale": 2})
    assert engine.batch_key(plain) is not None and engine.batch_key(hires) is None


def test_prompt_editing_in_the_second_pass_counts_its_steps(engine, tiny_models):
    """A1111 counts whole steps on through the hires pass: "[cat:dog:5]" after 3 first-pass steps switches at its
    2nd step (and "[cat:dog:1.5]", a fraction past 1, at half of it); by hand: encode_prompts(..., hires_steps)."""
    from diffusers import AutoPipelineForImage2Image

    from pico.pipelines.prompt_embeds import encode_prompts

    body = dict(Phrase="cat", Seed=4, Steps=3, Width=64, Height=64, GuidanceScale=7.5)
    edited = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Steps": 4, "Strength": 0.5,
                                                                            "Phrase": "[cat:dog:5]"}))
    pipe = diffusers_pipeline(tiny_models, SD1)
    first = pipe(prompt="cat", num_inference_steps=3, width=64, height=64, guidance_scale=7.5,
                 generator=generators([4]), output_type="latent").images
    second = AutoPipelineForImage2Image.from_pipe(pipe)
    second.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    embeds = encode_prompts(second, "[cat:dog:5]", None, steps=3, hires_steps=4)
    total, strength = second_pass_schedule(4, 0.5)
    theirs = second(**embeds.kwargs, image=latent((64, 64))(first), strength=strength, num_inference_steps=total,
                    guidance_scale=7.5, generator=generators([4]), **embeds.step_callback(second)).images
    assert_same_image(pixels(edited.images)[0], pixels(theirs)[0])
    fraction = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Steps": 4, "Strength": 0.5,
                                                                             "Phrase": "[cat:dog:1.5]"}))
    assert np.array_equal(pixels(fraction.images)[0], pixels(edited.images)[0])
    for phrase in ("cat", "dog"):
        plain = engine.generate(request(StableDiffusionRequest, **body, Hires={"Scale": 1, "Steps": 4, "Strength": 0.5,
                                                                              "Phrase": phrase}))
        assert not np.array_equal(pixels(plain.images)[0], pixels(edited.images)[0])
