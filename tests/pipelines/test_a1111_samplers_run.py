"""Every A1111 sampler PICO lists runs, on every schedule type it takes, and gives the same pixels for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from pico.catalog.samplers import A1111_SAMPLERS, SCHEDULE_TYPES, SCHEDULERS
from pico.pipelines.schedulers import build_scheduler, scheduler_name
from pico.schemas.requests import StableDiffusionRequest, StableDiffusionXlRequest
from tests.pipelines.test_reproducibility import (
    assert_same_image,
    diffusers_pipeline,
    pixels,
    request,
    with_scheduler,
)

A1111_NAMES = [f"{s.name} {t.label}" if t.name != "automatic" else s.name
               for s in A1111_SAMPLERS for t in SCHEDULE_TYPES if t.name == "automatic" or s.takes(t)]


def test_every_a1111_name_is_in_the_table():
    assert set(A1111_NAMES) <= set(SCHEDULERS) and len(A1111_NAMES) == 16 + 53  # plain names, and sampler x schedule pairs
    assert "DPM++ 2M Beta" not in SCHEDULERS  # DPM-Solver++ on beta sigmas fails at 50 steps in Diffusers 0.42


@pytest.mark.parametrize("name", A1111_NAMES)
def test_runs_and_is_reproducible(engine, name):
    body = dict(Phrase="cat", Seed=31, Steps=4, Scheduler=name, Width=64, Height=64)
    first = engine.generate(request(StableDiffusionRequest, **body))
    again = engine.generate(request(StableDiffusionRequest, **body))
    assert first.metadata[0]["Scheduler"] == name
    np.testing.assert_array_equal(pixels(first.images)[0], pixels(again.images)[0])


@pytest.mark.parametrize("name", ["DPM++ 2S a Karras", "DPM++ 3M SDE Exponential", "Euler Beta", "Euler a SGM Uniform",
                                  "PLMS", "LCM Uniform", "DPM2 a Karras"])
def test_equals_diffusers_configured_by_hand(engine, tiny_models, name):
    ours = engine.generate(request(StableDiffusionXlRequest, Phrase="cat", Seed=12, Steps=4, Scheduler=name,
                                   GuidanceScale=5.0, Width=64, Height=64))
    pipe = with_scheduler(diffusers_pipeline(tiny_models, "stabilityai/stable-diffusion-xl-base-1.0"), name)
    import torch

    theirs = pipe(prompt="cat", num_inference_steps=4, guidance_scale=5.0, width=64, height=64,
                  generator=[torch.Generator("cpu").manual_seed(12)]).images
    assert_same_image(pixels(ours.images)[0], pixels(theirs)[0])


@pytest.mark.parametrize("name", ["Euler Karras", "DPM2 Karras", "LMS Exponential", "Heun Beta", "Euler Uniform"])
def test_schedules_span_the_models_whole_noise_range_as_a1111s(tiny_models, name):
    from diffusers import PNDMScheduler

    own = PNDMScheduler.from_pretrained(tiny_models / "runwayml/stable-diffusion-v1-5", subfolder="scheduler")
    scheduler = build_scheduler(name, own)
    scheduler.set_timesteps(10)
    alphas = own.alphas_cumprod.numpy()
    sigma_max, sigma_min = ((1 - alphas[-1]) / alphas[-1]) ** 0.5, ((1 - alphas[0]) / alphas[0]) ** 0.5
    sigmas = scheduler.sigmas.numpy()
    assert sigmas.max() == pytest.approx(sigma_max, rel=1e-3) and sigmas[sigmas > 0].min() == pytest.approx(
        sigma_min, rel=1e-3)
    assert scheduler_name(scheduler) == name
