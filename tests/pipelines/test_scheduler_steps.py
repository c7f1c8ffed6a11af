"""Every sampler name runs to its last step at every step count a request may ask (the schedulers alone)."""

from __future__ import annotations

import inspect

import pytest
import torch

from pico.catalog.samplers import SCHEDULERS
from pico.errors import InvalidRequest
from pico.pipelines.schedulers import build_scheduler
from pico.schemas.requests import LCM_MAX_STEPS, StableDiffusionRequest

STEP_COUNTS = (1, 2, 3, 7, 50, 51)  # 50: the default, where DPM-Solver on beta sigmas failed


@pytest.fixture(scope="module")
def model_scheduler(tiny_models):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(tiny_models / "runwayml/stable-diffusion-v1-5").scheduler


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_a_sampler_steps_through_every_step_count(model_scheduler, name):
    for steps in STEP_COUNTS:
        if name.startswith("LCM") and steps > LCM_MAX_STEPS:
            continue  # refused at validation (below)
        scheduler = build_scheduler(name, model_scheduler)
        scheduler.set_timesteps(steps)
        if hasattr(scheduler, "noise_sampler_seed"):
            scheduler.noise_sampler_seed = [0]
        generator = torch.Generator().manual_seed(0)
        sample = torch.randn((1, 4, 8, 8), generator=generator) * scheduler.init_noise_sigma
        for timestep in scheduler.timesteps:
            model_input = scheduler.scale_model_input(sample, timestep)
            output = torch.randn(model_input.shape, generator=generator) * 0.1
            extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
            sample = scheduler.step(output, timestep, sample, **extra).prev_sample
        assert torch.isfinite(sample).all(), f"{name} at {steps} steps"


def test_lcm_past_its_steps_is_refused_naming_steps():
    with pytest.raises(InvalidRequest) as caught:
        StableDiffusionRequest.parse({"Phrase": "cat", "Scheduler": "LCM", "Steps": 51}, 2048 * 2048)
    assert caught.value.field == "Steps"
