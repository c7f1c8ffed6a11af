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
from typing import Callable

from pico.prompt_syntax import short_phrase_shape
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


def call_key(request: GenerationRequest, model: str,
             long_phrase_shape: Callable[[], tuple | None]) -> tuple | None:
    """What requests must share to run in one batched call (None: this one runs alone).

    The model (``model``: its name as the caller's cache knows it), the runner's key, the LoRAs at
    their weights (adapters are set for the whole call) and how A1111's reading encodes the phrases:
    guidance weight and 75-token chunks (another chunk count would be padded, which moves pixels).
    ``long_phrase_shape()`` counts the chunks of phrases that may need more than one, with the model's
    tokenizers (None when it cannot).
    """
    key = runner_for(request).batch_key(request)
    if key is None:
        return None
    phrase = getattr(request, "phrase", None)
    shape: tuple | None = ()
    if phrase is not None and request.prompt_syntax != "literal":
        shape = short_phrase_shape(phrase, request.negative_phrase, request.step_count()) or long_phrase_shape()
    if shape is None:
        return None
    return (model, *key, tuple(lora.key() for lora in request.lora_set), shape)
