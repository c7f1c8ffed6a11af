"""Image-to-image: redraw an input image guided by a phrase."""

from __future__ import annotations

from typing import Any

from pico.errors import InvalidRequest
from pico.pipelines.base import Runner
from pico.schemas.requests import StableDiffusionImageToImageRequest


class ImageToImage(Runner):
    name = "StableDiffusionImageToImage"
    route = "stable-diffusion-image-to-image"
    command = "image-to-image"
    request_type = StableDiffusionImageToImageRequest
    summary = "Stable Diffusion image-to-image: redraw an image guided by a phrase."

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import AutoPipelineForImage2Image

        return AutoPipelineForImage2Image.from_pipe(base, **components)

    def check(self, base: Any, request: StableDiffusionImageToImageRequest) -> None:
        super().check(base, request)
        if base.unet.config.in_channels != 4:
            raise InvalidRequest(
                f"Model {request.model} is an inpainting model; image-to-image needs a text-to-image model",
                field="Model", hint="Use the inpaint pipeline for it.",
            )

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

    def describe(self, request: StableDiffusionImageToImageRequest) -> dict[str, Any]:
        return {"Phrase": request.phrase, "NegativePhrase": request.negative_phrase, "Strength": request.strength}
