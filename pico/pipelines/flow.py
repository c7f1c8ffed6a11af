"""What SD 3.x and FLUX.1 calls need beyond the SD ones: T5 phrases, their own fields, sizes on their grid.

Every call on a flow-matching pipeline — text-to-image, image-to-image or inpainting — goes through
:func:`adapt_call` (from ``Runner.call``), so all routes treat these families alike: A1111's syntax is
removed from the text T5 reads (and a warning says so), MaxSequenceLength is passed, FLUX's negative
phrase is used only with true classifier-free guidance, and input images get one copy per image
(each encoded with its own seed's generator) at a size on the 16-pixel grid.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pico.errors import InvalidRequest
from pico.pipelines.base import Runner
from pico.pipelines.device import family_label, is_flow, is_sdxl
from pico.prompt_syntax import is_break, parse_attention, plan_prompt, uses_syntax
from pico.schemas.requests import GenerationRequest

if TYPE_CHECKING:
    from pico.pipelines.base import CallContext

GRID = 16  # VAE factor 8 x the transformers' 2x2 patches


def is_flux(pipe: Any) -> bool:
    """True for FLUX.1 pipelines (text-to-image, image-to-image, inpainting)."""
    return type(pipe).__name__.startswith("Flux")


def t5_tokenizer(pipe: Any) -> Any:
    """The T5 tokenizer of an SD 3 (tokenizer_3) or FLUX (tokenizer_2) pipeline, or None."""
    return getattr(pipe, "tokenizer_2" if is_flux(pipe) else "tokenizer_3", None)


def default_sequence_length(pipe: Any) -> int:
    """T5 tokens read when the request does not say: 256 for FLUX.1 schnell (no guidance input), else 512."""
    if is_flux(pipe) and not pipe.transformer.config.get("guidance_embeds", False):
        return 256
    return 512


def plain_phrase(text: str, steps: int, negative: bool = False) -> tuple[str, list[str]]:
    """The text T5 and CLIP read for a phrase in A1111's syntax (weights, BREAK and tags removed), and what was lost."""
    if not uses_syntax(text, negative=negative):
        return text, []
    key = "NegativePhrase" if negative else "Phrase"
    plan = plan_prompt(text, steps, negative=negative)
    runs = parse_attention(plan.texts[0])
    plain = re.sub(r"[ \t]{2,}", " ", "".join(" " if is_break(run) else run[0] for run in runs)).strip()
    notes = []
    if plain != plan.texts[0].strip() or any(weight != 1.0 for _, weight in runs):
        notes.append(f"{key} uses AUTOMATIC1111 weights or BREAK, which SD 3 and FLUX do not apply: their brackets "
                     "were removed and the words read at weight 1 (PromptSyntax 'literal' sends the text as it is).")
    if len(plan.schedule) > 1:
        notes.append(f"{key}: prompt editing and alternation ([from:to:when], [a|b]) are not applied to SD 3 and "
                     "FLUX; the first step's text was used throughout.")
    if plan.guidance_factor != 1.0:
        notes.append(f"{key}: the trailing ':{plan.guidance_factor:g}' guidance weight is not applied to SD 3 and "
                     "FLUX.")
    return plain, notes + plan.warnings


def _map_texts(value: Any, convert: Any) -> Any:
    if isinstance(value, list):
        return [convert(v) if v is not None else None for v in value]
    return convert(value) if value is not None else None


def _texts(value: Any) -> list[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if v is not None]


def adapt_call(ctx: "CallContext", requests: list[GenerationRequest], arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a Diffusers call (built as for SD) made right for an SD 3 or FLUX pipeline; notes in ctx."""
    pipe, first = ctx.pipe, requests[0]
    notes: list[str] = []
    arguments = dict(arguments)
    if getattr(first, "prompt_syntax", "a1111") != "literal":
        for key, negative in (("prompt", False), ("negative_prompt", True)):
            def convert(text: str, negative: bool = negative) -> str:
                plain, lost = plain_phrase(text, arguments["num_inference_steps"], negative)
                notes.extend(lost)
                return plain

            arguments[key] = _map_texts(arguments.get(key), convert)
    length = getattr(first, "max_sequence_length", None) or default_sequence_length(pipe)
    arguments["max_sequence_length"] = length
    notes += _t5_length_notes(pipe, arguments, length)
    if is_flux(pipe):
        notes += _flux_guidance(pipe, first, arguments)
    elif getattr(first, "true_guidance_scale", 1.0) != 1.0:
        notes.append("TrueGuidanceScale applies to FLUX only; Stable Diffusion 3 guides with GuidanceScale "
                     "(classifier-free).")
    if first.attention_slicing:
        notes.append(f"AttentionSlicing was not applied: {family_label(pipe)} computes attention with PyTorch's "
                     "memory-efficient SDPA.")
    _images_on_the_grid(arguments)
    if "width" in arguments:
        ctx.size = (arguments["width"], arguments["height"])
    ctx.warnings.extend(dict.fromkeys(notes))
    return arguments


def _t5_length_notes(pipe: Any, arguments: dict[str, Any], length: int) -> list[str]:
    tokenizer = t5_tokenizer(pipe)
    notes = []
    for key, value in (("Phrase", arguments.get("prompt")), ("NegativePhrase", arguments.get("negative_prompt"))):
        for text in dict.fromkeys(_texts(value)):
            if tokenizer is None or len(text) < length // 4:  # a T5 token covers a few characters at most
                continue
            count = len(tokenizer(text, truncation=False).input_ids)
            if count > length:
                notes.append(f"{key} is {count} T5 tokens long; the model read the first {length} "
                             "(MaxSequenceLength, at most 512), the rest was ignored.")
    return notes


def _flux_guidance(pipe: Any, request: GenerationRequest, arguments: dict[str, Any]) -> list[str]:
    """FLUX: clip skip does not exist, the negative phrase needs true CFG, schnell embeds no guidance."""
    notes = []
    if arguments.pop("clip_skip", None) is not None:
        notes.append("ClipSkip is not applied to FLUX.1 (it reads CLIP's pooled output only).")
    true_scale = getattr(request, "true_guidance_scale", 1.0)
    negative = arguments.get("negative_prompt")
    if true_scale > 1:
        arguments["true_cfg_scale"] = true_scale
        # guidance against the empty phrase when none is given, as Diffusers' true CFG needs a negative
        arguments["negative_prompt"] = [n or "" for n in negative] if isinstance(negative, list) else negative or ""
    else:
        if _texts(negative):
            notes.append("NegativePhrase was not used: FLUX.1 follows a negative phrase only with true "
                         "classifier-free guidance; set TrueGuidanceScale above 1 (e.g. 4, about twice the time).")
        arguments.pop("negative_prompt", None)
    if not pipe.transformer.config.get("guidance_embeds", False) and request.guidance_scale:
        notes.append(f"GuidanceScale {request.guidance_scale:g} has no effect on FLUX.1 schnell models: they are not "
                     "guidance-distilled (TrueGuidanceScale is true classifier-free guidance).")
    return notes


def _images_on_the_grid(arguments: dict[str, Any]) -> None:
    """One copy of the input image per output image, and an output size on the 16-pixel grid."""
    image = arguments.get("image")
    if image is None:
        return
    images = image if isinstance(image, list) else [image]
    count = arguments.get("num_images_per_prompt", 1) * max(1, len(_texts(arguments.get("prompt"))))
    if len(images) == 1 and count > 1:
        # Diffusers' SD 3 / FLUX image encoding draws with one generator per *input* image: one copy per
        # output image makes image i depend on Seed+i alone, as everywhere else.
        arguments["image"] = images * count
    width, height = arguments.get("width") or images[0].width, arguments.get("height") or images[0].height
    if min(width, height) < GRID:
        raise InvalidRequest(f"ImageBase64 is {width}x{height}; SD 3 and FLUX draw on a 16-pixel grid, so each "
                             "side needs at least 16 pixels", field="ImageBase64",
                             hint="Send a larger image, or give Width and Height.")
    arguments["width"], arguments["height"] = width // GRID * GRID, height // GRID * GRID


def text_to_image_command(base: Any) -> str:
    """The text-to-image command that runs a loaded pipeline's family."""
    if is_flow(base):
        return "flux" if is_flux(base) else "stable-diffusion-3"
    return "stable-diffusion-xl" if is_sdxl(base) else "stable-diffusion or stable-diffusion-2"


class FlowTextToImage(Runner):
    """Text-to-image for one flow-matching family: the route refuses models of other families."""

    family_prefix: ClassVar[str]  # the Diffusers pipeline class names of the family start with it
    family_words: ClassVar[str]  # "a Stable Diffusion 3 model"

    def derive(self, base: Any, **components: Any) -> Any:
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image.from_pipe(base, **components)

    def inputs(self, request: GenerationRequest) -> dict[str, Any]:
        return {"prompt": request.phrase, "negative_prompt": request.negative_phrase}

    def check(self, base: Any, request: GenerationRequest) -> None:
        """Refuse models of another family, naming the route that runs them."""
        if not type(base).__name__.startswith(self.family_prefix):
            raise InvalidRequest(
                f"Model {request.model} is a {family_label(base)} model; {self.command} needs {self.family_words}",
                field="Model", hint=f"Use it with {text_to_image_command(base)} (or image-to-image, inpaint), or pick "
                                    "another model.")
        super().check(base, request)

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        return {**super().describe(request), "MaxSequenceLength": request.max_sequence_length}


def unused_flow_fields(request: GenerationRequest) -> list[str]:
    """Warnings for the SD 3 / FLUX fields a request gave to an SD 1/2/XL model, which has no use for them."""
    notes = []
    if getattr(request, "max_sequence_length", None) is not None:
        notes.append("MaxSequenceLength applies to SD 3 and FLUX models (T5); this model ignored it.")
    if getattr(request, "true_guidance_scale", 1.0) != 1.0:
        notes.append("TrueGuidanceScale applies to FLUX models; this model guides with GuidanceScale.")
    return notes
