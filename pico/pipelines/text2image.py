"""Text-to-image: Stable Diffusion 1.x, 2.x and XL, from a phrase."""

from __future__ import annotations

from typing import Any

from pico.pipelines.base import Runner
from pico.schemas.requests import (
    StableDiffusion2Request,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)


class TextToImage(Runner):
    """Draws the phrase from noise; Diffusers picks the SD or SDXL pipeline from the model."""

    batchable = True

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image.from_pipe(base, **components)

    def inputs(self, request: StableDiffusionRequest) -> dict[str, Any]:
        return {"prompt": request.phrase, "negative_prompt": request.negative_phrase}

    def batch_inputs(self, requests: list[StableDiffusionRequest]) -> dict[str, Any]:
        """One prompt per image, so each request keeps its own phrase, negative phrase and seeds."""
        negatives = [r.negative_phrase or "" for r in requests for _ in range(r.total)]
        return {
            "prompt": [r.phrase for r in requests for _ in range(r.total)],
            "negative_prompt": negatives if any(negatives) else None,
        }


class StableDiffusion(TextToImage):
    """Stable Diffusion 1.x (runwayml/stable-diffusion-v1-5 by default)."""

    name = "StableDiffusion"
    route = "stable-diffusion"
    command = "stable-diffusion"
    request_type = StableDiffusionRequest
    summary = "Stable Diffusion 1.x text-to-image."


class StableDiffusion2(TextToImage):
    """Stable Diffusion 2.x, with the DPM-Solver multistep scheduler as the original used."""

    name = "StableDiffusion2"
    route = "stable-diffusion-2"
    command = "stable-diffusion-2"
    request_type = StableDiffusion2Request
    summary = "Stable Diffusion 2.x text-to-image, with the DPM-Solver multistep scheduler."
    default_scheduler = "DPM++ 2M"


class StableDiffusionXL(TextToImage):
    """Stable Diffusion XL, without the invisible watermark."""

    name = "StableDiffusionXL"
    route = "stable-diffusion-xl"
    command = "stable-diffusion-xl"
    request_type = StableDiffusionXlRequest
    summary = "Stable Diffusion XL text-to-image, without the invisible watermark."
