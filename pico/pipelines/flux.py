"""FLUX.1 text-to-image: schnell by default, dev and fine-tunes by Model."""

from __future__ import annotations

from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.flow import FlowTextToImage
from pico.schemas.requests import FluxRequest


class Flux(FlowTextToImage):
    """FLUX.1 (CLIP-L pooled and T5): dev embeds its distilled guidance, schnell none; true CFG on request."""

    info = pipeline_info("flux")
    family_prefix = "Flux"
    family_words = "a FLUX.1 model"

    def describe(self, request: FluxRequest) -> dict[str, Any]:
        return {**super().describe(request), "TrueGuidanceScale": request.true_guidance_scale}
