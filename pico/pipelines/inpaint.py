"""Inpainting: repaint the white area of a mask, guided by a phrase."""

from __future__ import annotations

from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.base import CallContext, Runner
from pico.pipelines.inpaint_areas import plan_inpaint
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
        size = (size[0] // 8 * 8, size[1] // 8 * 8)
        plan = plan_inpaint(image, mask, size, blur=request.mask_blur, masked_area=request.inpaint_area == "masked",
                            padding=request.mask_padding, fill_masked=request.masked_content == "fill",
                            keep_unmasked=request.keep_unmasked)
        return {
            "prompt": request.phrase,
            "negative_prompt": request.negative_phrase,
            # One copy per image: Diffusers encodes each copy with that image's own generator, so
            # image i depends on Seed+i alone (one copy was encoded with the first generator only).
            "image": [plan.image] * request.total,
            "mask_image": plan.mask,
            "strength": request.strength,
            "width": size[0],
            "height": size[1],
            "_plan": plan,
        }

    def call(self, ctx: CallContext, requests: list[Any], arguments: dict[str, Any]) -> list[Any]:
        """The pipeline call, then A1111's paste back (uncrop, overlay) when the request asked for it."""
        plan = arguments.pop("_plan")
        ctx.warnings.extend(note for note in plan.notes if note not in ctx.warnings)
        return [plan.finish(image) for image in super().call(ctx, requests, arguments)]
