"""The pipelines PICO serves, by name: route, CLI command, response Name, request type and summary.

Routes, the CLI, batch files and the engine look pipelines up here; ``pico.pipelines.registry``
maps each one to the runner that calls Diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pico.catalog.families import FAMILY_TABLE, base_family, family_of
from pico.errors import NotFound
from pico.schemas.requests import (
    FluxRequest,
    GenerationRequest,
    StableDiffusion3Request,
    StableDiffusion2Request,
    StableDiffusionImageToImageRequest,
    StableDiffusionImageVariationRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
    UpscaleRequest,
)


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline's names and request type."""

    route: str  # the REST route under /api/v1: "stable-diffusion-xl"
    name: str  # the Name in responses: "StableDiffusionXL"
    command: str  # the CLI subcommand: "stable-diffusion-xl"
    request_type: type[GenerationRequest]
    summary: str
    task: str  # text-to-image, image-to-image, inpaint, variation or upscale
    family: str | None = None  # the family a text-to-image route draws with (FLUX: its default model's)


PIPELINES: tuple[PipelineInfo, ...] = (
    PipelineInfo("stable-diffusion", "StableDiffusion", "stable-diffusion", StableDiffusionRequest,
                 "Stable Diffusion 1.x text-to-image.", "text-to-image", "sd1"),
    PipelineInfo("stable-diffusion-2", "StableDiffusion2", "stable-diffusion-2", StableDiffusion2Request,
                 "Stable Diffusion 2.x text-to-image, with the DPM-Solver multistep scheduler.", "text-to-image",
                 "sd2"),
    PipelineInfo("stable-diffusion-xl", "StableDiffusionXL", "stable-diffusion-xl", StableDiffusionXlRequest,
                 "Stable Diffusion XL text-to-image, without the invisible watermark.", "text-to-image", "sdxl"),
    PipelineInfo("stable-diffusion-image-to-image", "StableDiffusionImageToImage", "image-to-image",
                 StableDiffusionImageToImageRequest,
                 "Stable Diffusion image-to-image: redraw an image guided by a phrase.", "image-to-image"),
    PipelineInfo("stable-diffusion-image-variation", "StableDiffusionImageVariation", "image-variation",
                 StableDiffusionImageVariationRequest,
                 "Stable Diffusion image variation: new images in the manner of an input image.", "variation"),
    PipelineInfo("stable-diffusion-inpaint", "StableDiffusionInpaint", "inpaint", StableDiffusionInpaintRequest,
                 "Stable Diffusion inpainting: repaint the white area of a mask.", "inpaint"),
    PipelineInfo("stable-diffusion-3", "StableDiffusion3", "stable-diffusion-3", StableDiffusion3Request,
                 "Stable Diffusion 3.x text-to-image (3.5 Medium by default; 3.5 Large and Large Turbo by Model).",
                 "text-to-image", "sd3"),
    PipelineInfo("flux", "Flux", "flux", FluxRequest,
                 "FLUX.1 text-to-image (schnell by default; dev and fine-tunes by Model).", "text-to-image",
                 "flux-schnell"),
    PipelineInfo("upscale", "Upscale", "upscale", UpscaleRequest,
                 "Upscale an image: Lanczos or Nearest, or the SD x4 upscaler model guided by a phrase.", "upscale"),
)

_BY_ROUTE = {info.route: info for info in PIPELINES}
_BY_TYPE = {info.request_type: info for info in PIPELINES}
_BY_ANY_NAME = {key.lower(): info for info in PIPELINES for key in (info.route, info.command, info.name)}


def pipeline_info(route: str) -> PipelineInfo:
    """The pipeline of a route name (exact)."""
    return _BY_ROUTE[route]


def pipeline_for(request: GenerationRequest) -> PipelineInfo:
    """The pipeline that takes this request type."""
    return _BY_TYPE[type(request)]


def find_pipeline(name: str) -> PipelineInfo:
    """A pipeline by its route, CLI command or Name (any case); NotFound lists the known ones."""
    info = _BY_ANY_NAME.get(str(name).strip().lower())
    if info is None:
        known = ", ".join(i.route for i in PIPELINES)
        raise NotFound(f"Unknown pipeline {name!r}; known: {known}", field="Pipeline")
    return info


def text_to_image_pipeline(model: str, family: str | None = None) -> PipelineInfo:
    """The text-to-image pipeline whose defaults fit ``model``'s family: ``family`` when known (a checkpoint's
    header, a Diffusers folder's configs: ``ModelResolver.family``), else told from the id.

    An inpainting or refiner family gets its base family's route (the families table names it), whose runner
    then says what the model can do instead.
    """
    for candidate in (family, family_of(model)):
        if candidate and base_family(candidate) in FAMILY_TABLE:
            return pipeline_info(FAMILY_TABLE[base_family(candidate)].route)
    return pipeline_info(FAMILY_TABLE["sd1"].route)
