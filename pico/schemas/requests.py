"""The request dataclasses of the pipelines, with the original PICO's names and defaults.

Field names travel as PascalCase (``GuidanceScale``), exactly as existing clients send them.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from dataclasses_json import DataClassJsonMixin, LetterCase
from dataclasses_json import config as json_config
from PIL import Image

from pico.catalog.families import Family, defaults_for
from pico.catalog.files.names import parse_name
from pico.errors import InvalidRequest
from pico.catalog.models import (
    FLUX_SCHNELL_MODEL,
    NOT_PIPELINES,
    SD1_INPAINT_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SD35_MEDIUM_MODEL,
    SD_X4_UPSCALER_MODEL,
    SDXL_MODEL,
    VAE_MODELS,
    VARIATION_MODEL,
    canonical,
)
from pico.catalog.samplers import FLOW_SCHEDULER_NAMES, SCHEDULER_NAMES
from pico.catalog.upscalers import HIRES_UPSCALERS, SD_X4, UPSCALERS
from pico.schemas import fields
from pico.schemas.fields import internal, option
from pico.schemas.images import FORMATS, decode_image
from pico.prompt_syntax import extract_extra_networks, strip_comments

MAX_STEPS = 250
MAX_TOTAL = 5
MAX_SEED = 2**32 - 1
MAX_PHRASE_CHARS = 20_000
MIN_SIDE, MAX_SIDE = 64, 4096
LCM_MAX_STEPS = 50  # Diffusers' LCMScheduler: original_inference_steps
MAX_SEQUENCE_LENGTH = 512  # T5 tokens SD 3 and FLUX read at most
PRECISIONS = ("half", "full", "bfloat16")
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_LORAS = 8
MAX_LORA_WEIGHT = 4.0


def valid_model_id(text: str) -> bool:
    """True for an org/name model id: no path, no '..', nothing after the name (not even a newline)."""
    return MODEL_ID.fullmatch(text) is not None and ".." not in text


def check_model_name(text: str, field: str = "Model") -> None:
    """Refuse a Model that is neither an org/name id nor a checkpoint name that stays inside its folder.

    Which one it is, and whether it exists, is the resolver's business (``pico.catalog.resolver``);
    this only refuses what can never name anything: paths, '..', control characters.
    """
    if valid_model_id(text):
        return
    try:
        parse_name(text, field, "checkpoint")
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"{field} must be a model id (org/name) or a checkpoint's name inside its folder, got {text!r}",
            field=field, hint="Local paths are not accepted: put Diffusers models in the models directory as org/name, "
            "and single-file checkpoints in a checkpoint folder (named by their path inside it).",
            detail=exc.message) from None


def pick_seeds(seed: int | None, total: int) -> list[int]:
    """One seed per image: ``seed``, ``seed``+1, ... (a random start when seed is null or -1)."""
    start = secrets.randbelow(MAX_SEED + 1) if seed is None or seed < 0 else seed
    return [(start + i) % (MAX_SEED + 1) for i in range(total)]


R = TypeVar("R", bound="GenerationRequest")


def _model(default: str) -> Any:
    return option(default, max_length=1024,
                  description="Model id, org/name (from the models directory or the Hugging Face hub), or a "
                              "single-file checkpoint: its path inside its folder with or without .safetensors, "
                              "A1111's title 'name.safetensors [hash]', or its short hash.")


@dataclass(kw_only=True)
class Lora(DataClassJsonMixin):
    """One LoRA to apply, and how strongly."""

    dataclass_json_config: ClassVar[dict] = json_config(letter_case=LetterCase.PASCAL)["dataclasses_json"]

    name: str = option("", required=True, max_length=1024, example="add-detail",
                       description="The LoRA file: its path inside its folder, with or without .safetensors, or "
                                   "its file name alone as in A1111's <lora:NAME:WEIGHT>.")
    weight: float = option(1.0, minimum=-MAX_LORA_WEIGHT, maximum=MAX_LORA_WEIGHT,
                           description="How strongly it applies (0 = not at all; negative inverts it).")
    unet_weight: float | None = option(None, minimum=-MAX_LORA_WEIGHT, maximum=MAX_LORA_WEIGHT,
                                       description="A different weight for the UNet (A1111's <lora:NAME:TE:UNET>); "
                                                   "default: Weight.")

    def key(self) -> tuple[str, float, float]:
        """(name, text-encoder weight, UNet weight): what tells two LoRA choices apart."""
        return (self.name, self.weight, self.weight if self.unet_weight is None else self.unet_weight)


def _guidance(default: float) -> Any:
    return option(default, minimum=0, maximum=10,
                  description="How closely to follow the phrase (classifier-free guidance scale).")


def _image(description: str, mode: str = "RGB") -> Any:
    return option("", required=True, image=mode, description=description)


def _family_guidance(what: str) -> Any:
    return option(None, minimum=0, maximum=10,
                  description=f"How closely to follow the phrase; default: {what}. FLUX.1 dev: the distilled "
                              "guidance it embeds (one pass); FLUX.1 schnell has none.")


def _family_precision() -> Any:
    return option(None, choices=PRECISIONS,
                  description="half = float16, full = float32, bfloat16; default: half for SD 1/2/XL models, "
                              "bfloat16 for SD 3 and FLUX (CPUs always run full).")


def _max_sequence_length() -> Any:
    return option(None, minimum=1, maximum=MAX_SEQUENCE_LENGTH,
                  description="SD 3 and FLUX: how many T5 tokens of the phrase the model reads (the rest is cut); "
                              "default: the family's (FLUX.1 schnell 256, others 512). Ignored by SD 1/2/XL.")


def _true_guidance() -> Any:
    return option(1.0, minimum=1, maximum=10,
                  description="FLUX: true classifier-free guidance against NegativePhrase when above 1 (two passes "
                              "per step: about twice the time); 1 = off. Ignored by other families.")


def _flow_phrase() -> Any:
    return option("", required=True, max_length=MAX_PHRASE_CHARS, example="ginger cat",
                  description="What to draw (the prompt). T5 reads up to MaxSequenceLength tokens, CLIP the first "
                              "77; AUTOMATIC1111 weights are not applied (their brackets are removed, and a warning "
                              "says so) unless PromptSyntax is literal.")


@dataclass(kw_only=True)
class GenerationRequest(DataClassJsonMixin):
    """Fields every pipeline shares."""

    dataclass_json_config: ClassVar[dict] = json_config(letter_case=LetterCase.PASCAL)["dataclasses_json"]

    model: str = _model(SD1_MODEL)
    total: int = option(1, minimum=1, maximum=MAX_TOTAL, description="Number of images.")
    seed: int | None = option(
        None, minimum=-1, maximum=MAX_SEED,
        description="Seed of the first image (image i uses Seed+i); null or -1 picks one at random.",
    )
    guidance_scale: float = _guidance(7.5)
    quality: float | None = option(
        None, minimum=0, maximum=1,
        description="Fraction of 250 denoising steps (0.2 -> 50 steps, at least 1); default: the model family's "
                    "steps (SD 1/2/XL: 50, the same as Quality 0.2; SD 3.5: 40; FLUX.1 schnell: 4, dev: 28).",
    )
    steps: int | None = option(
        None, minimum=1, maximum=MAX_STEPS, description="Denoising steps; overrides Quality when given.",
    )
    precision: str = option("half", choices=PRECISIONS,
                            description="half = float16, full = float32, bfloat16 (CPUs always run full).")
    vae_type: str = option("original", choices=("original", "ema", "mse"),
                           description="VAE: the model's own, or stabilityai/sd-vae-ft-ema or -mse (SD 1/2 only).")
    attention_slicing: bool = option(False, description="Compute attention in slices: less memory, a bit slower.")
    width: int | None = option(None, minimum=MIN_SIDE, maximum=MAX_SIDE, multiple_of=8,
                               description="Image width in pixels; default: the model's native size.")
    height: int | None = option(None, minimum=MIN_SIDE, maximum=MAX_SIDE, multiple_of=8,
                                description="Image height in pixels; default: the model's native size.")
    scheduler: str | None = option(None, choices=SCHEDULER_NAMES,
                                   description="Sampler, by its AUTOMATIC1111 name; default: the model's own.")
    output_format: str = option("png", choices=FORMATS, description="Encoding of the returned images.")
    loras: list[Lora] = option(factory=list, max_length=MAX_LORAS,
                               description="LoRAs to apply (from the LoRA folders), each with a weight; "
                                           "<lora:NAME:WEIGHT> tags in the phrase add to them.")

    ignored_fields: list[str] = internal(list)
    images: dict[str, Image.Image] = internal(dict)
    lora_set: list[Lora] = internal(list)  # Loras and the phrase's <lora:...> tags: what is applied

    route_family: ClassVar[str | None] = None  # the family a route serves when the model's name does not tell
    sd_guidance: ClassVar[float] = 7.5  # a null GuidanceScale on an SD 1/2/XL model (routes of every family)

    def defaults(self) -> Family:
        """The defaults of this request's model family (steps, guidance, T5 length, precision)."""
        return defaults_for(self.model, self.route_family)

    def validate(self, max_pixels: int) -> None:
        """Checks across fields, and decoding of image fields; raises InvalidRequest."""
        check_model_name(self.model)
        self.lora_set = merge_loras(self.loras, self.phrase_loras())
        if canonical(self.model) in NOT_PIPELINES:
            default = type(self).__dataclass_fields__["model"].default
            raise InvalidRequest(
                f"Model {self.model} is a VAE, not a pipeline: it cannot draw on its own", field="Model",
                hint=f"Leave Model out (this route's default is {default}) and set VaeType to 'ema' or 'mse' "
                     "to use the SD 1/2 VAEs." if self.model in VAE_MODELS.values() else
                     f"Leave Model out (this route's default is {default}); start the server with --sdxl-vae "
                     f"{self.model} to decode SDXL with it.",
            )
        if (self.width is None) != (self.height is None):
            missing = "Height" if self.height is None else "Width"
            other = "Width" if missing == "Height" else "Height"
            raise InvalidRequest(f"{missing} must be given together with {other}", field=missing)
        family = self.defaults()
        self._settle_defaults(family)
        if self.scheduler and self.scheduler.split()[0] == "LCM" and self.step_count() > LCM_MAX_STEPS:
            raise InvalidRequest(f"The LCM sampler runs at most {LCM_MAX_STEPS} steps, got {self.step_count()}",
                                 field="Steps", hint="LCM models draw in 2 to 8 steps; ask for fewer.")
        if family.flow:
            check_flow_fields(self, family.label)
        if self.width is not None and self.width * self.height > max_pixels:
            raise InvalidRequest(
                f"Width x Height is {self.width}x{self.height} ({self.width * self.height:,} pixels); "
                f"the limit is {max_pixels:,} pixels", field="Width",
            )
        for f in fields.image_fields(type(self)):
            name = fields.wire_name(f.name)
            if name not in self.images:
                self.images[name] = decode_image(getattr(self, f.name), name, max_pixels, fields.spec_of(f).image)

    def _settle_defaults(self, family: Family) -> None:
        """Fill the fields left null that mean "the family's default": guidance, precision, T5 length."""
        if self.guidance_scale is None:
            self.guidance_scale = family.guidance if family.flow else self.sd_guidance
        if self.precision is None:
            self.precision = family.cuda_precision
        if getattr(self, "max_sequence_length", 0) is None and family.max_sequence_length:
            self.max_sequence_length = family.max_sequence_length

    def phrase_loras(self) -> list[Lora]:
        """The LoRAs named by ``<lora:NAME:WEIGHT>`` tags in the phrase (none for requests without one)."""
        return []

    def loads_model(self) -> bool:
        """Whether this request runs its Model (the upscale route's Lanczos and Nearest do not)."""
        return True

    def step_count(self) -> int:
        """Denoising steps: Steps when given, else round(250 x Quality) from 1 to 250, else the family's default."""
        if self.steps is not None:
            return self.steps
        if self.quality is not None:
            return max(1, min(MAX_STEPS, round(MAX_STEPS * self.quality)))
        return self.defaults().steps

    def parameters(self) -> dict[str, Any]:
        """The request as JSON, without image payloads: what is embedded in output files."""
        data = fields.to_wire(self)
        for f in fields.image_fields(type(self)):
            data.pop(fields.wire_name(f.name), None)
        return data

    @classmethod
    def parse(cls: type[R], body: Any, max_pixels: int, images: dict[str, Image.Image] | None = None) -> R:
        """Validate a decoded JSON body into this request type (see :func:`pico.schemas.fields.parse`).

        ``images`` supplies image fields already decoded (by wire name), e.g. from multipart
        uploads; they stand in for the base64 fields and are checked against ``max_pixels``.
        """
        images = images or {}
        for name, image in images.items():
            if image.width * image.height > max_pixels:
                raise InvalidRequest(f"{name} is {image.width}x{image.height}; the limit is {max_pixels:,} pixels",
                                     field=name)
        request = fields.parse(cls, {**body, **{name: "(decoded)" for name in images}} if images else body)
        request.images.update(images)
        request.validate(max_pixels)
        return request


PASCAL_CASE: dict = json_config(letter_case=LetterCase.PASCAL)["dataclasses_json"]


@dataclass(kw_only=True)
class HiresFix(DataClassJsonMixin):
    """Hires fix (AUTOMATIC1111's): draw at Width x Height, upscale, then redraw at the larger size."""

    dataclass_json_config: ClassVar[dict] = PASCAL_CASE

    scale: float = option(2.0, minimum=1, maximum=4, description="Upscale factor, unless Width or Height is given.")
    width: int | None = option(None, minimum=MIN_SIDE, maximum=MAX_SIDE,
                               description="Target width; with Height alone, the aspect ratio is kept.")
    height: int | None = option(None, minimum=MIN_SIDE, maximum=MAX_SIDE,
                                description="Target height; both: upscaled to cover them, the rest cropped.")
    upscaler: str = option("Latent", choices=HIRES_UPSCALERS,
                           description="Latent (and its modes): the latents are resized; Lanczos, Nearest, None: "
                                       "the first image is.")
    steps: int | None = option(None, minimum=1, maximum=MAX_STEPS,
                               description="Steps the second pass runs, as in A1111 (on a schedule of Steps/Strength "
                                           "steps, from Strength's noise); default: the first pass's.")
    strength: float = option(0.7, minimum=0, maximum=1,
                             description="How much the second pass changes the image; 0: no second pass.")
    scheduler: str | None = option(None, choices=SCHEDULER_NAMES, description="Sampler of the second pass; "
                                                                               "default: the first pass's.")
    phrase: str | None = option(None, max_length=MAX_PHRASE_CHARS,
                                description="Phrase of the second pass; default: Phrase.")
    negative_phrase: str | None = option(None, max_length=MAX_PHRASE_CHARS,
                                         description="Negative phrase of the second pass; default: NegativePhrase.")

    ignored_fields: list[str] = internal(list)

    def target_size(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(width, height) the first image is upscaled to, then (x, y) pixels to crop, as A1111 computes them."""
        if self.width is None and self.height is None:
            return int(width * self.scale), int(height * self.scale), 0, 0
        if self.height is None or (self.width is not None and width / height < self.width / self.height):
            to_width, to_height = self.width, self.width * height // width
        else:
            to_width, to_height = self.height * width // height, self.height
        if self.width is None or self.height is None:
            return to_width, to_height, 0, 0
        return to_width, to_height, to_width - self.width, to_height - self.height


@dataclass(kw_only=True)
class StableDiffusionRequest(GenerationRequest):
    """Stable Diffusion 1.x text-to-image."""

    phrase: str = option("", required=True, max_length=MAX_PHRASE_CHARS, example="ginger cat",
                         description="What to draw (the prompt), in AUTOMATIC1111's syntax: (word:1.3), [word], "
                                     "BREAK, [from:to:when], [a|b]; longer than 77 tokens is fine.")
    negative_phrase: str | None = option(None, max_length=MAX_PHRASE_CHARS,
                                         description="What to keep out of the image (negative prompt).")
    prompt_syntax: str = option("a1111", choices=("a1111", "literal"),
                                description="a1111: read weights, BREAK and prompt editing as AUTOMATIC1111 does; "
                                            "literal: the text as it is, cut at 77 tokens (Diffusers' own encoding).")
    clip_skip: int | None = option(None, minimum=1, maximum=12,
                                   description="Text-encoder layers to stop before the last, counted as A1111 and "
                                               "model cards do: 1 is the last layer, 2 the one before; default: the "
                                               "model's own.")
    hires: HiresFix | None = option(None, description="Hires fix: a second pass at a larger size, e.g. "
                                                      '{"Scale": 2, "Upscaler": "Latent", "Strength": 0.5}.')

    def validate(self, max_pixels: int) -> None:
        """As the base; a hires fix's target size must fit the pixel limit."""
        super().validate(max_pixels)
        if self.hires is not None:
            check_hires(self.hires, self.step_count(), self.width, self.height, max_pixels)

    def phrase_loras(self) -> list[Lora]:
        """``<lora:NAME:WEIGHT>`` tags in the phrase, read as A1111 reads them (not with PromptSyntax literal)."""
        if self.prompt_syntax == "literal" or not self.phrase:
            return []
        try:
            _, tags, _ = extract_extra_networks(strip_comments(self.phrase))
        except InvalidRequest as error:  # a weight that is not a number
            error.field = error.field or "Phrase"
            raise
        for tag in tags:
            for value in (tag.weight, tag.unet_weight):
                if not -MAX_LORA_WEIGHT <= value <= MAX_LORA_WEIGHT:
                    raise InvalidRequest(f"The weight {value:g} of <lora:{tag.name}:...> in Phrase is out of range; "
                                         f"LoRA weights are between -4 and 4", field="Phrase")
        return [Lora(name=tag.name, weight=tag.weight,
                     unet_weight=None if tag.unet_weight == tag.weight else tag.unet_weight) for tag in tags]


def lora_from_text(text: str, field: str) -> dict[str, Any]:
    """A LoRA written as ``NAME`` or ``NAME:WEIGHT`` (the CLI's --lora, OpenAI's short form) as a Loras item."""
    name, sep, weight = text.strip().rpartition(":")
    if sep:
        try:
            return {"Name": name, "Weight": float(weight)}
        except ValueError:
            pass  # a colon that is part of the name
    if not text.strip():
        raise InvalidRequest(f"{field} is empty; write NAME or NAME:WEIGHT", field=field)
    return {"Name": text.strip()}


def merge_loras(given: list[Lora], tagged: list[Lora]) -> list[Lora]:
    """The LoRAs a request applies: the Loras field, then the phrase's tags; a name twice is an error."""
    merged = list(given) + list(tagged)
    if len(merged) > MAX_LORAS:
        raise InvalidRequest(f"The request applies {len(merged)} LoRAs (Loras and <lora:...> tags together); "
                             f"the limit is {MAX_LORAS}", field="Loras")
    seen: dict[str, int] = {}
    for index, lora in enumerate(merged):
        where = f"Loras[{index}]" if index < len(given) else "Phrase"
        name = lora.name.strip()
        if not name:
            raise InvalidRequest(f"{where}.Name is empty; name a LoRA file" if where != "Phrase"
                                 else "A <lora:...> tag in Phrase has no name", field=where)
        parse_name(name, f"{where}.Name" if where != "Phrase" else "Phrase", "LoRA")
        if name.casefold() in seen:
            raise InvalidRequest(f"LoRA {name!r} is named twice (in Loras or as a <lora:...> tag in Phrase)",
                                 field=where, hint="Name each LoRA once, with the weight you want.")
        seen[name.casefold()] = index
    return merged


@dataclass(kw_only=True)
class StableDiffusion2Request(StableDiffusionRequest):
    """Stable Diffusion 2.x text-to-image (DPM-Solver multistep scheduler by default)."""

    model: str = _model(SD2_MODEL)


@dataclass(kw_only=True)
class StableDiffusionXlRequest(StableDiffusionRequest):
    """Stable Diffusion XL text-to-image (no invisible watermark)."""

    model: str = _model(SDXL_MODEL)
    guidance_scale: float = _guidance(5.0)
    refiner: str | None = option(
        None, max_length=200, example="stabilityai/stable-diffusion-xl-refiner-1.0",
        description="An SDXL refiner model id, org/name: the base denoises up to RefinerSwitchAt and hands its "
                    "latents to the refiner, which does the rest (Diffusers' ensemble of experts).")
    refiner_switch_at: float = option(
        0.8, minimum=0, maximum=1,
        description="With Refiner: the fraction of the denoising the base does (0.8: the first 80 %).")

    def validate(self, max_pixels: int) -> None:
        """As the base, and VaeType must be original: the ema/mse VAEs do not fit SDXL; a Refiner must be a model."""
        if self.vae_type != "original":
            raise_vae_mismatch(self.vae_type, self.model)
        if self.refiner is not None:
            check_refiner(self.refiner, self.refiner_switch_at)
            if self.hires is not None:
                raise InvalidRequest("Hires and Refiner cannot be combined: the refiner finishes the first pass's "
                                     "latents, the hires fix redraws them larger", field="Hires",
                                     hint="Leave one of them out.")
        super().validate(max_pixels)


def check_hires(hires: HiresFix, steps: int, width: int | None, height: int | None, max_pixels: int) -> None:
    """Refuse a hires fix whose target is over the pixel limit."""
    if width is not None:
        to_width, to_height, crop_x, crop_y = hires.target_size(width, height)
        if (to_width - crop_x) * (to_height - crop_y) > max_pixels:
            raise InvalidRequest(f"The hires fix makes {to_width - crop_x}x{to_height - crop_y} images; the limit is "
                                 f"{max_pixels:,} pixels", field="Hires",
                                 hint="Lower Hires.Scale (or Hires.Width and Height), or Width and Height.")


def check_refiner(refiner: str, switch_at: float) -> None:
    """Refuse a Refiner that is not a pipeline id, or a switch point that leaves one of the two nothing to do."""
    if not valid_model_id(refiner):
        raise InvalidRequest(f"Refiner must be a model id of the form org/name, got {refiner!r}", field="Refiner",
                             hint="For example stabilityai/stable-diffusion-xl-refiner-1.0.")
    if canonical(refiner) in NOT_PIPELINES:
        raise InvalidRequest(f"Refiner {refiner} is a VAE, not a refiner model", field="Refiner")
    if not 0 < switch_at < 1:
        raise InvalidRequest(
            f"RefinerSwitchAt must be above 0 and below 1 with a Refiner, got {switch_at:g}: at {switch_at:g} "
            f"{'the base' if switch_at == 0 else 'the refiner'} would do nothing", field="RefinerSwitchAt",
            hint="0.8 (the base does the first 80 % of the denoising) is the usual split; leave Refiner out "
                 "for the base alone.")


def raise_vae_mismatch(vae_type: str, model: str, family: str = "SDXL") -> None:
    """Refuse an SD 1/2 VAE for an SDXL (or SD 3, FLUX) model."""
    raise InvalidRequest(
        f"VaeType {vae_type!r} does not fit {family} model {model}: the ema and mse VAEs are for SD 1 and 2",
        field="VaeType", hint=f"Leave VaeType out (or 'original') for {family}.",
    )


def check_flow_fields(request: GenerationRequest, family_label: str) -> None:
    """Refuse what a flow-matching model (SD 3.x, FLUX.1) cannot do: DDPM-style samplers, sizes off its grid, VAEs."""
    if request.scheduler is not None and request.scheduler not in FLOW_SCHEDULER_NAMES:
        raise_scheduler_misfit(request.scheduler, family_label)
    for name, value in (("Width", request.width), ("Height", request.height)):
        if value is not None and value % 16:
            raise InvalidRequest(
                f"{name} must be a multiple of 16 for {family_label} models, got {value}", field=name,
                hint=f"Use {max(16, value // 16 * 16)} or {value // 16 * 16 + 16}: their latents are patched 2x2.")
    if request.vae_type != "original":
        raise_vae_mismatch(request.vae_type, request.model, family_label)


def raise_scheduler_misfit(scheduler: str, family_label: str) -> None:
    """Refuse a DDPM-style sampler for a flow-matching model, naming the samplers that fit."""
    raise InvalidRequest(
        f"Scheduler {scheduler!r} does not fit {family_label} models: they are flow-matching models, and the "
        f"samplers that fit them are {', '.join(FLOW_SCHEDULER_NAMES)}", field="Scheduler",
        hint=f"Use {' or '.join(FLOW_SCHEDULER_NAMES)}, or leave Scheduler out for the model's own.",
    )


def _strength(default: float) -> Any:
    return option(default, minimum=0, maximum=1,
                  description="How much to change the input image: near 0 keeps it, 1 ignores it. "
                              "int(steps x Strength) denoising steps run; at least one must.")


def check_input_gives_a_size(request: GenerationRequest, pipeline: str) -> None:
    """Refuse an input image too small to give an output size when Width and Height are left out."""
    width, height = request.images["ImageBase64"].size
    if request.width is None and min(width, height) < 8:
        raise InvalidRequest(
            f"ImageBase64 is {width}x{height}; {pipeline} draws at the input's size rounded down to a "
            "multiple of 8, so each side needs at least 8 pixels", field="ImageBase64",
            hint="Send a larger image, or give Width and Height to resize it.",
        )


def check_denoising_steps(steps: int, strength: float) -> None:
    """Refuse a Strength and step count that leave Diffusers no denoising step (it would crash)."""
    if int(steps * strength) >= 1:  # Diffusers runs int(num_inference_steps * strength) steps
        return
    if strength == 0:
        raise InvalidRequest("Strength 0 leaves the image as it is: there is nothing to generate",
                             field="Strength", hint="Use a Strength above 0 (0.1 changes the image a little).")
    steps_hint = "Raise "
    if strength * MAX_STEPS >= 1:  # else no step count in range can do it (and 1/strength may overflow)
        fewest = math.ceil(1 / strength)
        while int(fewest * strength) < 1 and fewest <= MAX_STEPS:  # float rounding: 3 x 0.3333 is below 1
            fewest += 1
        if fewest <= MAX_STEPS:
            steps_hint = f"Raise Steps to at least {fewest}, or "
    raise InvalidRequest(
        f"Strength {strength:g} with {steps} step{'s' if steps != 1 else ''} leaves no denoising step to run "
        f"(int({steps} x {strength:g}) = 0)", field="Strength",
        hint=f"{steps_hint}Strength to at least {math.ceil(1000 / steps) / 1000:g}.",
    )


@dataclass(kw_only=True)
class StableDiffusionImageToImageRequest(StableDiffusionRequest):
    """Stable Diffusion image-to-image: redraw ImageBase64 guided by the phrase (SD 1/2/XL, SD 3, FLUX models)."""

    image_base64: str = _image("The input image (PNG, JPEG, WebP...), base64 or a data: URL.")
    strength: float = _strength(0.8)
    guidance_scale: float | None = _family_guidance("7.5 for SD 1/2/XL models, the family's for SD 3 and FLUX")
    precision: str | None = _family_precision()
    max_sequence_length: int | None = _max_sequence_length()
    true_guidance_scale: float = _true_guidance()
    hires: HiresFix | None = internal(lambda: None)  # text-to-image only: off the wire here

    def validate(self, max_pixels: int) -> None:
        """As the base; Strength must leave a denoising step, and the input must give an image size."""
        check_denoising_steps(self.step_count(), self.strength)
        super().validate(max_pixels)
        check_input_gives_a_size(self, "image-to-image")


@dataclass(kw_only=True)
class StableDiffusionInpaintRequest(StableDiffusionRequest):
    """Stable Diffusion inpainting: repaint the white area of the mask (SD 1/2/XL, SD 3, FLUX models)."""

    model: str = _model(SD1_INPAINT_MODEL)
    image_base64: str = _image("The input image, base64 or a data: URL.")
    mask_image_base64: str = _image(
        "The mask, base64: white is repainted, black kept. Resized to the image's size if it differs.", "L"
    )
    strength: float = _strength(1.0)
    guidance_scale: float | None = _family_guidance("7.5 for SD 1/2/XL models, the family's for SD 3 and FLUX")
    precision: str | None = _family_precision()
    max_sequence_length: int | None = _max_sequence_length()
    true_guidance_scale: float = _true_guidance()
    mask_blur: int = option(0, minimum=0, maximum=64,
                            description="Gaussian blur of the mask in pixels (A1111's mask_blur): the repainted "
                                        "area fades into the kept one where KeepUnmasked pastes it back.")
    keep_unmasked: bool = option(False, description="Paste the input's pixels back outside the mask, through the "
                                                    "blurred mask, as A1111 does: only the masked area changes.")
    inpaint_area: str = option("whole", choices=("whole", "masked"),
                               description="whole: draw the whole picture; masked: draw only the area around the "
                                           "mask at Width x Height and paste it back (A1111's \"only masked\").")
    mask_padding: int = option(32, minimum=0, maximum=MAX_SIDE,
                               description="InpaintArea masked: pixels around the mask to draw too.")
    masked_content: str = option("original", choices=("original", "fill"),
                                 description="What the masked area starts from: the input, or its surroundings "
                                             "blurred in (A1111's \"fill\").")
    hires: HiresFix | None = internal(lambda: None)  # text-to-image only: off the wire here

    def validate(self, max_pixels: int) -> None:
        """As the base, and Strength must leave a denoising step; the mask is resized to the image's size."""
        check_denoising_steps(self.step_count(), self.strength)
        super().validate(max_pixels)
        check_input_gives_a_size(self, "inpainting")
        image, mask = self.images["ImageBase64"], self.images["MaskImageBase64"]
        if mask.size != image.size:
            self.images["MaskImageBase64"] = mask.resize(image.size, Image.Resampling.NEAREST)


@dataclass(kw_only=True)
class StableDiffusionImageVariationRequest(GenerationRequest):
    """Stable Diffusion image variation: new images in the manner of ImageBase64 (no phrase)."""

    model: str = _model(VARIATION_MODEL)
    image_base64: str = _image("The input image, base64 or a data: URL.")
    guidance_scale: float = _guidance(3.0)


@dataclass(kw_only=True)
class StableDiffusion3Request(StableDiffusionRequest):
    """Stable Diffusion 3.x text-to-image (3.5 Medium by default; 3.5 Large and Large Turbo by Model)."""

    route_family: ClassVar[str | None] = "sd3"

    phrase: str = _flow_phrase()
    prompt_syntax: str = option("a1111", choices=("a1111", "literal"),
                                description="a1111: AUTOMATIC1111's weights, BREAK and prompt editing are removed "
                                            "from the text (T5 cannot apply them; a warning says so); literal: the "
                                            "text as it is.")
    model: str = _model(SD35_MEDIUM_MODEL)
    guidance_scale: float | None = _family_guidance("4.5 (3.5 Large: 3.5, Large Turbo: none)")
    precision: str = option("bfloat16", choices=PRECISIONS,
                            description="bfloat16 (the default), half = float16, full = float32 (CPUs always run "
                                        "full).")
    scheduler: str | None = option(None, choices=SCHEDULER_NAMES,
                                   description=f"Sampler: {', '.join(FLOW_SCHEDULER_NAMES)} (flow matching); "
                                               "default: the model's own (Euler).")
    max_sequence_length: int | None = _max_sequence_length()
    hires: HiresFix | None = internal(lambda: None)  # no hires fix for SD 3 and FLUX: off the wire here


@dataclass(kw_only=True)
class FluxRequest(StableDiffusion3Request):
    """FLUX.1 text-to-image (schnell by default; dev and fine-tunes by Model)."""

    route_family: ClassVar[str | None] = "flux-dev"  # a fine-tune whose name does not say: most start from dev

    model: str = _model(FLUX_SCHNELL_MODEL)
    guidance_scale: float | None = _family_guidance("none for schnell, 3.5 for dev")
    negative_phrase: str | None = option(None, max_length=MAX_PHRASE_CHARS,
                                         description="What to keep out of the image; used only with "
                                                     "TrueGuidanceScale above 1 (FLUX has no negative otherwise).")
    true_guidance_scale: float = _true_guidance()


@dataclass(kw_only=True)
class UpscaleRequest(StableDiffusionRequest):
    """Upscale an image: Lanczos or Nearest resampling, or Stable Diffusion's x4 upscaler model."""

    model: str = _model(SD_X4_UPSCALER_MODEL)
    phrase: str = option("", max_length=MAX_PHRASE_CHARS,
                         description="SD x4 only: what the image shows, to guide the upscaler (may be empty).")
    image_base64: str = _image("The image to upscale, base64 or a data: URL.")
    upscaler: str = option("Lanczos", choices=UPSCALERS,
                           description="Lanczos or Nearest (no model), or SD x4 (the Model, 4x, then resized).")
    scale: float = option(2.0, minimum=0.25, maximum=8,
                          description="Upscale factor, unless Width and Height are given; sides rounded down to a "
                                      "multiple of 8, as A1111 does.")
    noise_level: int = option(20, minimum=0, maximum=350,
                              description="SD x4 only: noise added to the input before upscaling.")
    guidance_scale: float = _guidance(9.0)
    hires: HiresFix | None = internal(lambda: None)

    def loads_model(self) -> bool:
        """Only the SD x4 upscaler runs a model; Lanczos and Nearest resample."""
        return self.upscaler == SD_X4

    def validate(self, max_pixels: int) -> None:
        """As the base; the output must fit the pixel limit, and resampling makes one image."""
        super().validate(max_pixels)
        if self.upscaler != SD_X4 and self.total != 1:
            raise InvalidRequest(f"Upscaler {self.upscaler} makes one image; Total must be 1, got {self.total}",
                                 field="Total", hint="Leave Total out, or use Upscaler 'SD x4' for several.")
        width, height = self.output_size()
        if width * height > max_pixels:
            raise InvalidRequest(f"The upscaled image would be {width}x{height}; the limit is {max_pixels:,} pixels",
                                 field="Scale", hint="Lower Scale, or send a smaller image.")
        if min(width, height) < 1:
            raise InvalidRequest(f"The upscaled image would be {width}x{height}", field="Scale",
                                 hint="Raise Scale, or send a larger image.")

    def output_size(self) -> tuple[int, int]:
        """The size of the result: Width x Height, else the input's times Scale rounded down to a multiple of 8."""
        if self.width is not None:
            return self.width, self.height
        width, height = self.images["ImageBase64"].size
        return int(width * self.scale // 8 * 8), int(height * self.scale // 8 * 8)
