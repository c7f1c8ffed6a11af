"""Image variation: new images in the manner of an input image, no phrase."""

from __future__ import annotations

from typing import Any

from pico.errors import InvalidRequest
from pico.pipelines.base import Runner
from pico.schemas.requests import StableDiffusionImageVariationRequest


class ImageVariation(Runner):
    name = "StableDiffusionImageVariation"
    route = "stable-diffusion-image-variation"
    command = "image-variation"
    request_type = StableDiffusionImageVariationRequest
    summary = "Stable Diffusion image variation: new images in the manner of an input image."

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import StableDiffusionImageVariationPipeline

        return StableDiffusionImageVariationPipeline.from_pipe(base, dtype=base.dtype, **components)

    def check(self, base: Any, request: StableDiffusionImageVariationRequest) -> None:
        super().check(base, request)
        if getattr(base, "image_encoder", None) is None:
            raise InvalidRequest(
                f"Model {request.model} is a {type(base).__name__}, not an image-variation model",
                field="Model", hint="Use lambdalabs/sd-image-variations-diffusers or another image-variation model.",
            )

    def inputs(self, request: StableDiffusionImageVariationRequest) -> dict[str, Any]:
        return {"image": request.images["ImageBase64"]}
