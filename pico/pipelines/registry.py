"""Route name -> runner, in one table. Adding a pipeline is a file and a line here."""

from __future__ import annotations

import re

from pico.errors import NotFound
from pico.pipelines.base import Runner
from pico.pipelines.image2image import ImageToImage
from pico.pipelines.inpaint import Inpaint
from pico.pipelines.text2image import StableDiffusion, StableDiffusion2, StableDiffusionXL
from pico.pipelines.variation import ImageVariation
from pico.schemas.requests import GenerationRequest

RUNNERS: tuple[Runner, ...] = (
    StableDiffusion(),
    StableDiffusion2(),
    StableDiffusionXL(),
    ImageToImage(),
    ImageVariation(),
    Inpaint(),
)

_BY_TYPE = {runner.request_type: runner for runner in RUNNERS}
_BY_ANY_NAME = {
    key.lower(): runner for runner in RUNNERS for key in (runner.route, runner.command, runner.name)
}


def runner_for(request: GenerationRequest) -> Runner:
    """The runner that takes this request type."""
    return _BY_TYPE[type(request)]


def find_runner(name: str) -> Runner:
    """A runner by its route, CLI command or Name (any case); NotFound lists the known ones."""
    runner = _BY_ANY_NAME.get(str(name).strip().lower())
    if runner is None:
        known = ", ".join(r.route for r in RUNNERS)
        raise NotFound(f"Unknown pipeline {name!r}; known: {known}", field="Pipeline")
    return runner


def text_to_image_runner(model: str) -> Runner:
    """The text-to-image runner whose defaults fit ``model``: SDXL, SD 2 or SD 1 (by id)."""
    name = model.lower()
    if re.search(r"(^|[-_/.])(sd)?xl([-_/.]|$)", name):
        return find_runner("stable-diffusion-xl")
    if re.search(r"stable-diffusion-2|(^|[-_/])sd-?2", name):
        return find_runner("stable-diffusion-2")
    return find_runner("stable-diffusion")
