"""The AUTOMATIC1111 API's bodies (/sdapi/v1), snake_case on the wire as A1111 clients send them.

Only the fields PICO acts on are declared, each with its range, so validation names them
and the OpenAPI document describes them; whatever else a client sends (hires fix,
restore_faces, scripts...) is ignored. Shapes follow A1111's ``modules/api/models.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataclasses_json import DataClassJsonMixin

from pico.schemas.fields import option
from pico.schemas.requests import MAX_PHRASE_CHARS, MAX_SEED, MAX_SIDE, MAX_STEPS, MAX_TOTAL, MIN_SIDE

MAX_N_ITER = 10
MAX_MASK_BLUR = 64
DEFAULT_SAMPLER = "Euler"  # what A1111 uses when a request names no sampler


@dataclass(kw_only=True)
class Txt2ImgRequest(DataClassJsonMixin):
    """AUTOMATIC1111 txt2img: the fields PICO uses; any other field is accepted and ignored."""

    prompt: str = option("", max_length=MAX_PHRASE_CHARS, description="What to draw.")
    negative_prompt: str = option("", max_length=MAX_PHRASE_CHARS, description="What to keep out of the image.")
    seed: int = option(-1, minimum=-1, maximum=MAX_SEED,
                       description="Seed of the first image; -1 picks one at random.")
    steps: int = option(50, minimum=1, maximum=MAX_STEPS, description="Denoising steps.")
    cfg_scale: float = option(7.0, minimum=0, maximum=10, description="Classifier-free guidance scale.")
    width: int = option(512, minimum=MIN_SIDE, maximum=MAX_SIDE,
                        description="Image width; rounded down to a multiple of 8.")
    height: int = option(512, minimum=MIN_SIDE, maximum=MAX_SIDE,
                         description="Image height; rounded down to a multiple of 8.")
    batch_size: int = option(1, minimum=1, maximum=MAX_TOTAL, description="Images per generation.")
    n_iter: int = option(1, minimum=1, maximum=MAX_N_ITER,
                         description="Generations in a row; seeds continue from one to the next.")
    sampler_name: str | None = option(None, max_length=100,
                                      description=f"Sampler (GET /sdapi/v1/samplers); default {DEFAULT_SAMPLER}.")
    sampler_index: str | None = option(None, max_length=100, description="Deprecated name of sampler_name.")
    scheduler: str | None = option(
        None, max_length=100,
        description="Schedule type (GET /sdapi/v1/schedulers); one the sampler lacks falls back to the sampler's own.")
    override_settings: dict[str, Any] | None = option(
        None, description="Only sd_model_checkpoint is used: the model for this request.")
    override_settings_restore_afterwards: bool = option(
        True, description="false: the override's sd_model_checkpoint stays the default model afterwards.")
    send_images: bool = option(True, description="false: answer without the images.")
    refiner_checkpoint: str | None = option(
        None, max_length=300, description="An SDXL refiner: an org/name id or a short name (sdxl-refiner); the "
                                          "base hands its latents over at refiner_switch_at (SDXL txt2img only).")
    refiner_switch_at: float = option(0.8, minimum=0, maximum=1,
                                      description="With refiner_checkpoint: the fraction of the steps the base does.")


@dataclass(kw_only=True)
class Img2ImgRequest(Txt2ImgRequest):
    """AUTOMATIC1111 img2img, and inpainting when a mask is given."""

    init_images: list[str] | None = option(
        None, required=True, max_length=1,
        description="The input image (base64 or a data: URL), resized to width x height.")
    denoising_strength: float = option(0.75, minimum=0, maximum=1,
                                       description="How much to change the image: 0 keeps it, 1 ignores it.")
    mask: str | None = option(None, description="Inpainting mask (base64 or a data: URL): white is repainted.")
    inpainting_mask_invert: int = option(0, minimum=0, maximum=1, description="1: repaint the black area instead.")
    mask_blur: int = option(4, minimum=0, maximum=MAX_MASK_BLUR, description="Gaussian blur radius of the mask.")


@dataclass
class ImagesResponse(DataClassJsonMixin):
    """txt2img and img2img answer: raw base64 PNGs, the request's parameters, and info as a JSON string."""

    images: list[str]
    parameters: dict[str, Any]
    info: str


@dataclass
class OptionsUpdate(DataClassJsonMixin):
    """Settings to change; only sd_model_checkpoint has an effect, other keys are ignored."""

    sd_model_checkpoint: str | None = option(None, max_length=300,
                                             description="A title from GET /sdapi/v1/sd-models: the default model.")


@dataclass
class Options(DataClassJsonMixin):
    """The settings PICO has of A1111's."""

    sd_model_checkpoint: str
    sd_checkpoint_hash: str | None = None
    samples_format: str = "png"
    sd_vae: str = "Automatic"
    CLIP_stop_at_last_layers: int = 1


@dataclass
class PngInfoRequest(DataClassJsonMixin):
    """An image whose generation parameters to read."""

    image: str = option("", required=True, description="The PNG, base64 or a data: URL.")


@dataclass
class PngInfoResponse(DataClassJsonMixin):
    """The infotext, the image's other text chunks, and the infotext parsed into fields."""

    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


@dataclass
class ProgressResponse(DataClassJsonMixin):
    """The running generation: progress 0..1, seconds left, and A1111's state snapshot."""

    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


@dataclass
class SamplerItem(DataClassJsonMixin):
    """One sampler."""

    name: str
    aliases: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SchedulerItem(DataClassJsonMixin):
    """One schedule type."""

    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


@dataclass
class SDModelItem(DataClassJsonMixin):
    """One checkpoint; its title is the model id."""

    title: str
    model_name: str
    filename: str
    hash: str | None = None
    sha256: str | None = None
    config: str | None = None


@dataclass
class LoraItem(DataClassJsonMixin):
    """One LoRA as A1111's Lora extension lists it; path is its name inside its folder (no server path)."""

    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScriptsList(DataClassJsonMixin):
    """Script titles per tab; PICO has none."""

    txt2img: list[str] = field(default_factory=list)
    img2img: list[str] = field(default_factory=list)


@dataclass
class EmbeddingsResponse(DataClassJsonMixin):
    """Textual-inversion embeddings; PICO loads none."""

    loaded: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=dict)


# Schedule types PICO can apply: A1111 name -> (label, suffix of the SCHEDULERS entry, default rho).
SCHEDULE_TYPES = {
    "automatic": ("Automatic", "", -1.0),
    "karras": ("Karras", " Karras", 7.0),
}
