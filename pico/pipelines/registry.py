"""Pipeline -> runner, in one table. Adding a pipeline is a file, a line here and a line in the catalog."""

from __future__ import annotations

from pico.catalog.pipelines import find_pipeline, pipeline_for
from pico.pipelines.base import Runner
from pico.pipelines.flux import Flux
from pico.pipelines.image2image import ImageToImage
from pico.pipelines.inpaint import Inpaint
from pico.pipelines.sd3 import StableDiffusion3
from pico.pipelines.text2image import StableDiffusion, StableDiffusion2, StableDiffusionXL
from pico.pipelines.upscale import Upscale
from pico.pipelines.variation import ImageVariation
from pico.schemas.requests import GenerationRequest

RUNNERS: tuple[Runner, ...] = (
    StableDiffusion(),
    StableDiffusion2(),
    StableDiffusionXL(),
    ImageToImage(),
    ImageVariation(),
    Inpaint(),
    StableDiffusion3(),
    Flux(),
    Upscale(),
)

_BY_ROUTE = {runner.route: runner for runner in RUNNERS}


def runner_for(request: GenerationRequest) -> Runner:
    """The runner that takes this request type."""
    return _BY_ROUTE[pipeline_for(request).route]


def find_runner(name: str) -> Runner:
    """A runner by its pipeline's route, CLI command or Name (any case); NotFound lists the known ones."""
    return _BY_ROUTE[find_pipeline(name).route]
