"""Inpainting: repaint the white area of a mask, guided by a phrase."""

from __future__ import annotations

from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.base import Runner
from pico.schemas.requests import StableDiffusionInpaintRequest


class Inpaint(Runner):
    """Repaints the white area of a mask; a 9-channel inpainting model or any text-to-image model."""

    info = pipeline_info("stable-diffusion-inpaint")
    accepts = ("text-to-image", "inpainting")

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import AutoPipelineForInpainting

        return AutoPipelineForInpainting.from_pipe(base, **components)

    def inputs(self, request: StableDiffusionInpaintRequest) -> dict[str, Any]:
        image, mask = request.images["ImageBase64"], request.images["MaskImageBase64"]
        size = (request.width, request.height) if request.width is not None else image.size
        return {
            "prompt": request.phrase,
            "negative_prompt": request.negative_phrase,
            # One copy per image: Diffusers encodes each copy with that image's own generator, so
            # image i depends on Seed+i alone (one copy was encoded with the first generator only).
            "image": [image] * request.total,
            "mask_image": mask,
            "strength": request.strength,
            "width": size[0] // 8 * 8,
            "height": size[1] // 8 * 8,
        }
