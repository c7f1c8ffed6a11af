"""Text-to-image: Stable Diffusion 1.x, 2.x and XL (with the SDXL refiner), from a phrase."""

from __future__ import annotations

from typing import Any

from pico.catalog.models import canonical
from pico.catalog.pipelines import pipeline_info
from pico.errors import InvalidRequest
from pico.pipelines.base import CallContext, Runner, model_kind
from pico.pipelines.device import family_label, is_flow, is_sdxl
from pico.schemas.fields import to_wire
from pico.schemas.requests import (
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
        # The batch key keeps requests without a negative phrase apart from those with one (even ""):
        # SDXL draws a missing one as zeros, and "" as the encoded empty text.
        negatives = [r.negative_phrase for r in requests for _ in range(r.total)]
        return {
            "prompt": [r.phrase for r in requests for _ in range(r.total)],
            "negative_prompt": None if negatives[0] is None else negatives,
        }

    # Hires fix (pico.pipelines.hires): a second pass after the call, for requests that ask for it.
    def batch_key(self, request: StableDiffusionRequest) -> tuple | None:
        """As the base; a request with a hires fix runs alone."""
        return None if getattr(request, "hires", None) is not None else super().batch_key(request)

    def call(self, ctx: CallContext, requests: list[Any], arguments: dict[str, Any]) -> list[Any]:
        """The call; with a hires fix, its two passes."""
        first = requests[0]
        if getattr(first, "hires", None) is None:
            return super().call(ctx, requests, arguments)
        from pico.pipelines.hires import run_hires

        seeds = [int(g.initial_seed()) for g in arguments["generator"]]
        return run_hires(ctx, arguments, first, seeds)

    def describe(self, request: StableDiffusionRequest) -> dict[str, Any]:
        """As the base, and the hires fix asked for."""
        meta = super().describe(request)
        if getattr(request, "hires", None) is not None:
            meta["Hires"] = to_wire(request.hires)
        return meta

    def check(self, base: Any, request: StableDiffusionRequest) -> None:
        """As every runner, and SD 3 / FLUX models go to their own routes (their defaults and fields differ)."""
        if is_flow(base):
            from pico.pipelines.flow import text_to_image_command

            raise InvalidRequest(
                f"Model {request.model} is a {family_label(base)} model; {self.command} runs Stable Diffusion "
                "1, 2 and XL models", field="Model",
                hint=f"Use {text_to_image_command(base)} for it: its defaults (steps, guidance, precision) and "
                     "samplers differ.")
        super().check(base, request)


class StableDiffusion(TextToImage):
    """Stable Diffusion 1.x (runwayml/stable-diffusion-v1-5 by default)."""

    info = pipeline_info("stable-diffusion")


class StableDiffusion2(TextToImage):
    """Stable Diffusion 2.x, with the DPM-Solver multistep scheduler as the original used."""

    info = pipeline_info("stable-diffusion-2")
    default_scheduler = "DPM++ 2M"


class StableDiffusionXL(TextToImage):
    """Stable Diffusion XL, without the invisible watermark; with Refiner, the ensemble of experts."""

    info = pipeline_info("stable-diffusion-xl")

    def batch_key(self, request: StableDiffusionXlRequest) -> tuple | None:
        key = super().batch_key(request)
        refiner = (canonical(request.refiner), request.refiner_switch_at) if request.refiner else None
        return None if key is None else (*key, refiner)

    def describe(self, request: StableDiffusionXlRequest) -> dict[str, Any]:
        meta = super().describe(request)
        if request.refiner:
            meta.update(Refiner=request.refiner, RefinerSwitchAt=request.refiner_switch_at)
        return meta

    def check_refiner(self, refiner: Any, request: StableDiffusionXlRequest) -> None:
        """Refuse a Refiner that cannot take SDXL latents: not SDXL, or an inpainting/variation model."""
        if not is_sdxl(refiner) or model_kind(refiner) != "text-to-image":
            raise InvalidRequest(
                f"Refiner {request.refiner} is not an SDXL refiner or base model (it is a {family_label(refiner)} "
                f"{model_kind(refiner)} model): it cannot continue from SDXL latents", field="Refiner",
                hint="Use stabilityai/stable-diffusion-xl-refiner-1.0, or an SDXL model.")

    def call(self, ctx: CallContext, requests: list[StableDiffusionXlRequest], arguments: dict[str, Any]) -> list:
        if ctx.refiner is None:
            return super().call(ctx, requests, arguments)
        from pico.pipelines.refiner import refine

        return refine(ctx, requests, arguments)
