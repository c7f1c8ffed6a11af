"""Stable Diffusion 3.x text-to-image: 3.5 Medium by default, 3.5 Large and Large Turbo by Model."""

from __future__ import annotations

from pico.catalog.pipelines import pipeline_info
from pico.pipelines.flow import FlowTextToImage


class StableDiffusion3(FlowTextToImage):
    """SD 3.x (MMDiT with CLIP-L, CLIP-G and T5): classifier-free guidance, flow-matching samplers."""

    info = pipeline_info("stable-diffusion-3")
    family_prefix = "StableDiffusion3"
    family_words = "a Stable Diffusion 3 model"
