"""The model ids PICO knows by default: defaults per pipeline, VAEs, aliases, revisions, short names."""

from __future__ import annotations

SD1_MODEL = "runwayml/stable-diffusion-v1-5"
SD2_MODEL = "stabilityai/stable-diffusion-2-1"
SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
SD1_INPAINT_MODEL = "runwayml/stable-diffusion-inpainting"
VARIATION_MODEL = "lambdalabs/sd-image-variations-diffusers"
SDXL_REFINER_MODEL = "stabilityai/stable-diffusion-xl-refiner-1.0"
SDXL_INPAINT_MODEL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
SD35_MEDIUM_MODEL = "stabilityai/stable-diffusion-3.5-medium"
SD35_LARGE_MODEL = "stabilityai/stable-diffusion-3.5-large"
SD35_LARGE_TURBO_MODEL = "stabilityai/stable-diffusion-3.5-large-turbo"
FLUX_SCHNELL_MODEL = "black-forest-labs/FLUX.1-schnell"
FLUX_DEV_MODEL = "black-forest-labs/FLUX.1-dev"
SD_X4_UPSCALER_MODEL = "stabilityai/stable-diffusion-x4-upscaler"  # the upscale route's model (Upscaler "SD x4")

# VaeType -> the VAE swapped in for the SD 1/2 families.
VAE_MODELS = {
    "ema": "stabilityai/sd-vae-ft-ema",
    "mse": "stabilityai/sd-vae-ft-mse",
}

# An SDXL VAE that is safe in float16, so SDXL decodes without upcasting to float32 (--sdxl-vae).
SDXL_FP16_VAE = "madebyollin/sdxl-vae-fp16-fix"

# Ids that moved on the hub keep working: requested id -> where it lives now.
ALIASES = {
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
}

# Ids that name a VAE, not a pipeline: refused as a request's Model before any load.
NOT_PIPELINES = frozenset({*VAE_MODELS.values(), SDXL_FP16_VAE})

# Hub revisions the original pinned.
REVISIONS = {VARIATION_MODEL: "v2.0"}

DEFAULT_MODELS = (SD1_MODEL, SD2_MODEL, SDXL_MODEL, SD1_INPAINT_MODEL, VARIATION_MODEL)
# The families' models a server allows without --allow-model, like the defaults above.
KNOWN_FAMILY_MODELS = (SD35_MEDIUM_MODEL, SD35_LARGE_MODEL, SD35_LARGE_TURBO_MODEL, FLUX_SCHNELL_MODEL,
                       FLUX_DEV_MODEL, SDXL_REFINER_MODEL, SDXL_INPAINT_MODEL)

# Short names for the OpenAI and A1111 APIs' `model` fields.
SHORT_NAMES = {
    "sd15": SD1_MODEL,
    "sd2": SD2_MODEL,
    "sdxl": SDXL_MODEL,
    "sd15-inpaint": SD1_INPAINT_MODEL,
    "sd-variation": VARIATION_MODEL,
    "sd35": SD35_MEDIUM_MODEL,
    "sd35-large": SD35_LARGE_MODEL,
    "sd35-large-turbo": SD35_LARGE_TURBO_MODEL,
    "flux-schnell": FLUX_SCHNELL_MODEL,
    "flux-dev": FLUX_DEV_MODEL,
    "sdxl-refiner": SDXL_REFINER_MODEL,
}


def model_id(name: str) -> str:
    """A model id from a short name (sd15, sdxl, ...) or an id; ids pass through unchanged."""
    return SHORT_NAMES.get(name.strip().lower(), name.strip())


def canonical(model_id: str) -> str:
    """The id a model lives under now (aliases followed): one cache entry however it is named."""
    return ALIASES.get(model_id, model_id)


def same_model(model_id: str) -> list[str]:
    """Every name of a model: the id, where it moved, and the old ids that moved to it."""
    target = canonical(model_id)
    return [model_id] + [name for name in (target, *ALIASES) if name != model_id and canonical(name) == target]
