"""Image-to-image: redraw an input image guided by a phrase."""

from __future__ import annotations

from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.base import Runner
from pico.schemas.requests import StableDiffusionImageToImageRequest


class ImageToImage(Runner):
    """Redraws an input image guided by a phrase; Strength says how much."""

    info = pipeline_info("stable-diffusion-image-to-image")

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import AutoPipelineForImage2Image

        return AutoPipelineForImage2Image.from_pipe(base, **components)

    def inputs(self, request: StableDiffusionImageToImageRequest) -> dict[str, Any]:
        image = request.images["ImageBase64"]
        if request.width is not None:
            image = image.resize((request.width, request.height))
        return {
            "prompt": request.phrase,
            "negative_prompt": request.negative_phrase,
            "image": image,
            "strength": request.strength,
        }
