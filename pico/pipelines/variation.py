"""Image variation: new images in the manner of an input image, no phrase."""

from __future__ import annotations

from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.base import Runner
from pico.schemas.requests import StableDiffusionImageVariationRequest


class ImageVariation(Runner):
    """New images in the manner of an input image, from an image-variation model (no phrase)."""

    info = pipeline_info("stable-diffusion-image-variation")
    accepts = ("variation",)

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import StableDiffusionImageVariationPipeline

        return StableDiffusionImageVariationPipeline.from_pipe(base, dtype=base.dtype, **components)

    def inputs(self, request: StableDiffusionImageVariationRequest) -> dict[str, Any]:
        return {"image": request.images["ImageBase64"]}
