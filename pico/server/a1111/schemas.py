"""The AUTOMATIC1111 API's bodies (/sdapi/v1), snake_case on the wire as A1111 clients send them.

The generation requests declare every field of A1111 1.10's API models (``modules/api/models.py``,
built from ``StableDiffusionProcessing*`` in ``modules/processing.py``) with A1111's defaults, so
each is parsed with the conversions A1111's pydantic models apply (``fields.parse(..., lenient=True)``)
and PICO's range checks; ``pico.server.a1111.features`` says what PICO does with each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataclasses_json import DataClassJsonMixin

from pico.schemas.fields import option
from pico.schemas.requests import MAX_PHRASE_CHARS, MAX_SEED, MAX_SIDE, MAX_STEPS, MAX_TOTAL, MIN_SIDE

MAX_N_ITER = 10
MAX_MASK_BLUR = 64
MAX_HIRES_SCALE = 4
DEFAULT_SAMPLER = "Euler"  # what A1111 uses when a request names no sampler (its sampler_index default)


def _text(description: str, default: str | None = "") -> Any:
    return option(default, max_length=MAX_PHRASE_CHARS, description=description)


def _name(description: str) -> Any:
    return option(None, max_length=300, description=description)


@dataclass(kw_only=True)
class ProcessingRequest(DataClassJsonMixin):
    """The fields A1111's txt2img and img2img share (StableDiffusionProcessing); unknown fields are ignored."""

    prompt: str = _text("What to draw, in A1111's prompt syntax.")
    negative_prompt: str = _text("What to keep out of the image.")
    styles: list[str] | None = option(None, description="Prompt styles: PICO has none (a warning names them).")
    seed: int = option(-1, minimum=-1, maximum=MAX_SEED,
                       description="Seed of the first image; -1 picks one at random.")
    subseed: int = option(-1, description="Variation seed: not applied (a warning says so when subseed_strength > 0).")
    subseed_strength: float = option(0.0, minimum=0, maximum=1, description="Variation strength: not applied.")
    seed_resize_from_h: int = option(-1, description="Not applied (a warning says so when above 0).")
    seed_resize_from_w: int = option(-1, description="Not applied (a warning says so when above 0).")
    sampler_name: str | None = _name(f"Sampler (GET /sdapi/v1/samplers); default {DEFAULT_SAMPLER}.")
    scheduler: str | None = _name("Schedule type (GET /sdapi/v1/schedulers); Automatic: the sampler's own.")
    batch_size: int = option(1, minimum=1, maximum=MAX_TOTAL, description="Images per generation.")
    n_iter: int = option(1, minimum=1, maximum=MAX_N_ITER,
                         description="Generations in a row; seeds continue from one to the next.")
    steps: int = option(50, minimum=1, maximum=MAX_STEPS, description="Denoising steps.")
    cfg_scale: float = option(7.0, minimum=0, maximum=10, description="Classifier-free guidance scale.")
    width: int = option(512, minimum=MIN_SIDE, maximum=MAX_SIDE,
                        description="Image width; rounded down to a multiple of 8.")
    height: int = option(512, minimum=MIN_SIDE, maximum=MAX_SIDE,
                         description="Image height; rounded down to a multiple of 8.")
    restore_faces: bool | None = option(None, description="Face restoration: not available (warned when true).")
    tiling: bool | None = option(None, description="Seamless tiling: not available (warned when true).")
    do_not_save_samples: bool = option(False, description="PICO saves nothing on the server: no effect.")
    do_not_save_grid: bool = option(False, description="PICO makes no grids: no effect.")
    eta: float | None = option(None, description="Noise multiplier of DDIM and ancestral samplers: Diffusers' "
                                                 "own is used (warned when it differs).")
    denoising_strength: float | None = option(None, minimum=0, maximum=1, description="See txt2img and img2img.")
    s_min_uncond: float | None = option(None, description="Not applied (warned when above 0).")
    s_churn: float | None = option(None, description="Not applied (warned when above 0).")
    s_tmax: float | None = option(None, description="Only used with s_churn: no effect.")
    s_tmin: float | None = option(None, description="Only used with s_churn: no effect.")
    s_noise: float | None = option(None, description="Not applied (warned when not 1).")
    override_settings: dict[str, Any] | None = option(
        None, description="Settings for this request only (see GET /sdapi/v1/options); those without effect "
                          "in PICO are named in a warning.")
    override_settings_restore_afterwards: bool = option(
        True, description="false: the override's settings stay in effect afterwards.")
    refiner_checkpoint: str | None = option(
        None, max_length=300, description="An SDXL refiner: an org/name id or a short name (sdxl-refiner); the "
                                          "base hands its latents over at refiner_switch_at (SDXL txt2img only).")
    refiner_switch_at: float = option(0.8, minimum=0, maximum=1,
                                      description="With refiner_checkpoint: the fraction of the steps the base does.")
    disable_extra_networks: bool = option(False, description="true: <lora:...> tags are read as plain text.")
    firstpass_image: str | None = option(None, description="Not applied (warned when set).")
    comments: dict[str, Any] | None = option(None, description="Comments: no effect.")
    sampler_index: str = option(DEFAULT_SAMPLER, max_length=300, description="Deprecated name of sampler_name.")
    script_name: str | None = _name("A script: img2img's \"SD upscale\"; others are refused.")
    script_args: list | None = option(None, description="The script's arguments, as A1111 takes them.")
    send_images: bool = option(True, description="false: answer without the images.")
    save_images: bool = option(False, description="PICO saves nothing on the server (warned when true).")
    alwayson_scripts: dict[str, Any] | None = option(None, description="Extension scripts: PICO has none (warned).")
    force_task_id: str | None = _name("Accepted; PICO's job id is in the X-Pico-Job header.")
    infotext: str | None = option(None, max_length=MAX_PHRASE_CHARS,
                                  description="Infotext to take parameters from: not applied (warned when set).")


@dataclass(kw_only=True)
class Txt2ImgRequest(ProcessingRequest):
    """AUTOMATIC1111 txt2img, with hires fix."""

    enable_hr: bool = option(False, description="Hires fix: draw, upscale, then redraw at the larger size.")
    denoising_strength: float = option(0.75, minimum=0, maximum=1,
                                       description="Hires fix: how much the second pass changes the image.")
    firstphase_width: int = option(0, minimum=0, maximum=MAX_SIDE,
                                   description="Old hires fix: the first pass's width (width is the target).")
    firstphase_height: int = option(0, minimum=0, maximum=MAX_SIDE,
                                    description="Old hires fix: the first pass's height (height is the target).")
    hr_scale: float = option(2.0, minimum=1, maximum=MAX_HIRES_SCALE,
                             description="Hires fix: upscale factor, unless hr_resize_x/y are given.")
    hr_upscaler: str | None = _name("Hires fix upscaler: Latent (and its modes), Lanczos, Nearest, None.")
    hr_second_pass_steps: int = option(0, minimum=0, maximum=MAX_STEPS,
                                       description="Hires fix: second pass steps; 0 means steps.")
    hr_resize_x: int = option(0, minimum=0, maximum=MAX_SIDE, description="Hires fix: target width (0: by scale).")
    hr_resize_y: int = option(0, minimum=0, maximum=MAX_SIDE, description="Hires fix: target height.")
    hr_checkpoint_name: str | None = _name("Hires fix checkpoint: only the same checkpoint (warned otherwise).")
    hr_sampler_name: str | None = _name("Hires fix sampler; default the first pass's.")
    hr_scheduler: str | None = _name("Hires fix schedule type; default the first pass's.")
    hr_prompt: str = _text("Hires fix prompt; empty: the prompt.")
    hr_negative_prompt: str = _text("Hires fix negative prompt; empty: the negative prompt.")


@dataclass(kw_only=True)
class Img2ImgRequest(ProcessingRequest):
    """AUTOMATIC1111 img2img, and inpainting when a mask is given."""

    init_images: list[str] | None = option(
        None, required=True, description="The input image (base64 or a data: URL); PICO uses the first.")
    resize_mode: int = option(0, minimum=0, maximum=3, description="0 just resize, 1 crop and resize, "
                                                                   "2 resize and fill, 3 (latent upscale): just resize.")
    denoising_strength: float = option(0.75, minimum=0, maximum=1,
                                       description="How much to change the image: 0 keeps it, 1 ignores it.")
    image_cfg_scale: float | None = option(None, description="For instruct-pix2pix models: no effect.")
    mask: str | None = option(None, description="Inpainting mask (base64 or a data: URL): white is repainted.")
    mask_blur_x: int = option(4, minimum=0, maximum=MAX_MASK_BLUR, description="Horizontal blur of the mask.")
    mask_blur_y: int = option(4, minimum=0, maximum=MAX_MASK_BLUR, description="Vertical blur of the mask.")
    mask_blur: int | None = option(None, minimum=0, maximum=MAX_MASK_BLUR,
                                   description="Blur of the mask both ways (sets mask_blur_x and _y).")
    mask_round: bool = option(True, description="Round the latent mask to 0 or 1 (false: not applied, warned).")
    inpainting_fill: int = option(0, minimum=0, maximum=3, description="Masked content: 0 fill, 1 original; "
                                                                       "2 latent noise and 3 latent nothing: original.")
    inpaint_full_res: bool = option(True, description="Inpaint area: true \"only masked\" (drawn at width x "
                                                      "height, pasted back), false the whole picture.")
    inpaint_full_res_padding: int = option(0, minimum=0, maximum=MAX_SIDE,
                                           description="Only masked: pixels around the mask to include.")
    inpainting_mask_invert: int = option(0, minimum=0, maximum=1, description="1: repaint the black area instead.")
    initial_noise_multiplier: float | None = option(None, description="Not applied (warned when not 1).")
    latent_mask: str | None = option(None, description="Not applied (warned when set).")
    include_init_images: bool = option(False, description="true: echo init_images and mask in parameters.")


@dataclass
class ImagesResponse(DataClassJsonMixin):
    """txt2img and img2img answer: raw base64 PNGs, the request's parameters, and info as a JSON string."""

    images: list[str]
    parameters: dict[str, Any]
    info: str


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


@dataclass
class SDVaeItem(DataClassJsonMixin):
    """One VAE: its name, and its model id as the file name (no server path)."""

    model_name: str
    filename: str


@dataclass
class UpscalerItem(DataClassJsonMixin):
    """One upscaler (A1111's fields)."""

    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = 4.0


@dataclass
class LatentUpscaleModeItem(DataClassJsonMixin):
    """One latent upscale mode of the hires fix."""

    name: str


@dataclass(kw_only=True)
class ExtrasRequest(DataClassJsonMixin):
    """AUTOMATIC1111's extras (postprocessing): upscaling; face restoration is not available."""

    resize_mode: int = option(0, minimum=0, maximum=1,
                              description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h.")
    show_extras_results: bool = option(True, description="false: answer without the images.")
    gfpgan_visibility: float = option(0.0, minimum=0, maximum=1, description="Face restoration: not available.")
    codeformer_visibility: float = option(0.0, minimum=0, maximum=1, description="Face restoration: not available.")
    codeformer_weight: float = option(0.0, minimum=0, maximum=1, description="Face restoration: not available.")
    upscaling_resize: float = option(2.0, minimum=0.25, maximum=8, description="Scale factor (resize_mode 0).")
    upscaling_resize_w: int = option(512, minimum=1, maximum=MAX_SIDE, description="Target width (resize_mode 1).")
    upscaling_resize_h: int = option(512, minimum=1, maximum=MAX_SIDE, description="Target height (resize_mode 1).")
    upscaling_crop: bool = option(True, description="resize_mode 1: crop to the target's aspect.")
    upscaler_1: str = option("None", max_length=300, description="Upscaler (GET /sdapi/v1/upscalers).")
    upscaler_2: str = option("None", max_length=300, description="Second upscaler: not applied (warned when set).")
    extras_upscaler_2_visibility: float = option(0.0, minimum=0, maximum=1, description="Second upscaler's share.")
    upscale_first: bool = option(False, description="Upscale before face restoration: no effect.")


@dataclass(kw_only=True)
class ExtrasSingleImageRequest(ExtrasRequest):
    """Upscale one image."""

    image: str = option("", required=True, description="The image, base64 or a data: URL.")


@dataclass(kw_only=True)
class ExtrasBatchImagesRequest(ExtrasRequest):
    """Upscale several images: imageList of {"data": base64, "name": "..."}."""

    imageList: list | None = option(None, required=True, description="[{\"data\": base64, \"name\": str}, ...]")


@dataclass
class ExtrasSingleImageResponse(DataClassJsonMixin):
    """The upscaled image and A1111's HTML info."""

    html_info: str
    image: str | None = None


@dataclass
class ExtrasBatchImagesResponse(DataClassJsonMixin):
    """The upscaled images and A1111's HTML info."""

    html_info: str
    images: list[str] = field(default_factory=list)
