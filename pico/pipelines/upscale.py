"""Upscaling: Lanczos or Nearest resampling (no model), or Stable Diffusion's x4 upscaler guided by a phrase."""

from __future__ import annotations

import time
from typing import Any

from pico.catalog.pipelines import pipeline_info
from pico.errors import InvalidRequest
from pico.pipelines.base import CallContext, Runner
from pico.pipelines.resize import LANCZOS, upscale
from pico.schemas.requests import UpscaleRequest, pick_seeds
from pico.schemas.results import Generation

UPSCALER_PIPELINE = "StableDiffusionUpscalePipeline"


def one_row_per_image(arguments: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments with the image and phrases repeated once per image, and one image per row.

    Diffusers noises the low-resolution input with one generator per input row: one input
    for several images was noised with the first generator alone, so image i did not depend
    on Seed+i only. With a row per image, each image's generator draws its input noise, then
    its latents, as a call for that image alone does.
    """
    total = arguments.get("num_images_per_prompt", 1)
    if total == 1:
        return arguments
    rows = {**arguments, "num_images_per_prompt": 1, "image": [arguments["image"]] * total}
    for key in ("prompt", "negative_prompt"):
        if isinstance(rows.get(key), str):
            rows[key] = [rows[key]] * total
    for key in ("prompt_embeds", "negative_prompt_embeds"):  # A1111's syntax: one row, for the one prompt
        if rows.get(key) is not None:
            rows[key] = rows[key].repeat_interleave(total, dim=0)
    return rows


class Upscale(Runner):
    """Upscales an image: as A1111's Lanczos and Nearest upscalers do, or with the SD x4 upscaler model."""

    info = pipeline_info("upscale")

    def derive(self, base: Any, **components: Any) -> Any:
        """A pipeline object of its own on the same modules (the class's from_pipe would cast them to float32)."""
        if type(base).__name__ != UPSCALER_PIPELINE:
            raise ValueError(f"{type(base).__name__} is not {UPSCALER_PIPELINE}")
        return type(base)(**{**base.components, **components}, max_noise_level=base.config.max_noise_level)

    def check(self, base: Any, request: UpscaleRequest) -> None:
        """Refuse a model that is not an upscaler model."""
        if type(base).__name__ != UPSCALER_PIPELINE:
            raise InvalidRequest(f"Model {request.model} is not an upscaler model ({UPSCALER_PIPELINE})",
                                 field="Model", hint="Leave Model out to use stabilityai/stable-diffusion-x4-upscaler.")

    def inputs(self, request: UpscaleRequest) -> dict[str, Any]:
        return {"prompt": request.phrase, "negative_prompt": request.negative_phrase,
                "image": request.images["ImageBase64"], "noise_level": request.noise_level}

    def call(self, ctx: CallContext, requests: list[Any], arguments: dict[str, Any]) -> list[Any]:
        """The x4 upscaler's call, its images then resized to the size asked for (as A1111 resizes)."""
        arguments = one_row_per_image({key: value for key, value in arguments.items()
                                       if key not in ("width", "height")})
        size = requests[0].output_size()
        return [image if image.size == size else image.resize(size, resample=LANCZOS)
                for image in super().call(ctx, requests, arguments)]

    def describe(self, request: UpscaleRequest) -> dict[str, Any]:
        meta: dict[str, Any] = {"Upscaler": request.upscaler, "Scale": request.scale}
        if request.loads_model():
            meta.update(Phrase=request.phrase, NegativePhrase=request.negative_phrase, NoiseLevel=request.noise_level)
        return meta

    def run(self, ctx: CallContext, requests: list[UpscaleRequest]) -> list[Generation]:
        """The model's call for SD x4; A1111's resampling otherwise, with no model and no steps."""
        if requests[0].loads_model():
            return super().run(ctx, requests)
        generations = []
        for request in requests:
            started = time.perf_counter()
            image = request.images["ImageBase64"]
            width, height = request.output_size()
            scale = request.scale if request.width is None else max(width / image.width, height / image.height)
            result = upscale(image, request.upscaler, scale)
            if result.size != (width, height):
                result = result.resize((width, height), resample=LANCZOS)
            seeds = pick_seeds(request.seed, request.total)
            meta = [{**self.describe(request), "Model": None, "Seed": seed, "Index": index,
                     "Width": width, "Height": height} for index, seed in enumerate(seeds)]
            generations.append(Generation(self.name, [result] * request.total, meta, list(ctx.warnings),
                                          time.perf_counter() - started))
        return generations
