"""The steps every pipeline shares: seeds, device and dtype, attention options, step callback, metadata.

A pipeline family is a :class:`Runner` subclass that says three things: which Diffusers
pipeline it derives from the loaded weights (:meth:`Runner.derive`), what it passes
to that pipeline (:meth:`Runner.inputs`), and what it adds to each image's metadata
(:meth:`Runner.describe`). :meth:`Runner.run` does the rest, the same way for all.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from collections import Counter
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from pico.catalog.pipelines import PipelineInfo
from pico.errors import Cancelled, InvalidRequest, OutOfMemory
from pico.pipelines.device import (
    family_label,
    free_device_memory,
    is_flow,
    is_out_of_memory,
    is_sdxl,
    precision_name,
    release_frames,
)
from pico.pipelines.prompt_embeds import check_clip_skip, diffusers_clip_skip, weighted_phrases
from pico.pipelines.schedulers import build_scheduler, scheduler_name
from pico.pipelines.steps import seed_noise_sampler, step_callback
from pico.schemas.requests import GenerationRequest, pick_seeds
from pico.schemas.results import Generation, PreviewCallback, StepCallback

if TYPE_CHECKING:
    import torch

log = logging.getLogger("pico")

OOM_HINT = ("Ask for fewer images (Total), a smaller Width/Height, turn on AttentionSlicing, "
            "or start with --offload model.")


@dataclass
class CallContext:
    """What the engine hands a runner for one call: the task pipeline (this call's alone) and where it runs."""

    pipe: Any  # derived from the loaded weights for this runner, with a fresh scheduler
    device: "torch.device"
    dtype: "torch.dtype"
    warnings: list[str] = field(default_factory=list)
    on_step: StepCallback | None = None
    on_preview: PreviewCallback | None = None
    fault: Callable[[int], None] | None = None  # fault-injection seam, called at each step with the steps done
    size: tuple[int, int] | None = None  # the images' (width, height), where latents do not say it (FLUX)
    refiner: Any = None  # SDXL: an image-to-image pipeline on the refiner's weights, for this call alone
    step_end: Callable | None = None  # PICO's own callback_on_step_end (progress, interrupts), for a second call


def generators(seeds: list[int]) -> list["torch.Generator"]:
    """CPU generators, one per image, so an image depends on its seed alone, whatever the device."""
    import torch

    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


# Hugging Face fast tokenizers set truncation and padding on their shared Rust tokenizer at each call, so two
# calls at once on one tokenizer can each get the other's padding (Diffusers pads to 77, then to "longest"):
# each derived pipeline gets copies.
TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")


class WarmPipelines:
    """Task pipelines derived from one loaded model and kept for reuse, and scheduler prototypes.

    ``from_pipe`` and ``Scheduler.from_config`` each cost milliseconds of Python per call. A call
    leases an idle derived pipeline (deriving one when none is idle) and gets a deep copy of a
    scheduler prototype, so no two concurrent calls ever share a pipeline object or a scheduler.
    """

    def __init__(self, base: Any):
        self.base = base
        self._idle: dict[tuple, list[Any]] = {}
        self._schedulers: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, runner: "Runner", vae: Any, scheduler: str | None) -> Iterator[Any]:
        """A task pipeline for ``runner`` (with ``vae`` swapped in, if any) and a fresh ``scheduler``."""
        key = (runner.route, id(vae))
        with self._lock:
            idle = self._idle.get(key)
            pipe = idle.pop() if idle else None
            prototype = self._schedulers.get(scheduler)
            if prototype is None:
                prototype = self._schedulers[scheduler] = build_scheduler(scheduler, self.base.scheduler)
        if pipe is None:
            try:
                pipe = runner.derive(self.base, **({"vae": vae} if vae is not None else {}))
            except ValueError as exc:  # Diffusers has no pipeline of this task for this model class
                raise InvalidRequest(f"{runner.name} cannot run this model (a {type(self.base).__name__})",
                                     field="Model", hint="Pick a model of a kind this pipeline runs.",
                                     detail=str(exc)) from exc
            pipe.set_progress_bar_config(disable=True)
            for name in TOKENIZERS:  # a fast tokenizer keeps its padding mode between calls: one per pipeline
                if getattr(pipe, name, None) is not None:
                    setattr(pipe, name, copy.deepcopy(getattr(pipe, name)))
        pipe.scheduler = copy.deepcopy(prototype)
        try:
            yield pipe
        finally:
            with self._lock:
                self._idle.setdefault(key, []).append(pipe)


class ModeGate:
    """Lets calls that want the same mode of a model run together on its shared modules.

    A model's mode is what is set on the modules themselves, which concurrent calls share:
    attention slicing, and the LoRA adapters that are active with their weights. It changes only
    while no call runs. Calls are served in arrival order by mode: one joins the running calls when
    they are in its mode and no call that arrived before it waits for another mode (so none is
    starved); a call wanting another mode waits until the model is idle, then switches it.
    ``apply(mode)`` does the switch; if it fails, the mode is unknown and the next call applies its own.
    """

    _UNKNOWN = object()

    def __init__(self, apply: Callable[[Any], None], initial: Any = False):
        self._apply = apply
        self._cond = threading.Condition()
        self._mode: Any = initial
        self._users = 0
        self._queue: list[tuple[int, Any]] = []  # (ticket, mode) of the calls waiting, in arrival order
        self._tickets = itertools.count()
        self._waiting: Counter = Counter()  # calls waiting for each mode

    @property
    def mode(self) -> Any:
        """The mode the modules are in now (None while unknown, after a failed switch)."""
        return None if self._mode is self._UNKNOWN else self._mode

    @contextmanager
    def use(self, mode: Any) -> Iterator[None]:
        """Hold the model in ``mode`` for the duration of a call (switching it when idle, if need be)."""
        with self._cond:
            ticket = next(self._tickets)
            self._queue.append((ticket, mode))
            self._waiting[mode] += 1
            try:
                while not self._may_enter(ticket, mode):
                    self._cond.wait()
            finally:
                self._queue.remove((ticket, mode))
                self._waiting[mode] -= 1
            if self._mode != mode:  # only reachable with no call running
                self._mode = self._UNKNOWN
                try:
                    self._apply(mode)
                except BaseException:
                    self._cond.notify_all()
                    raise
                self._mode = mode
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    def _may_enter(self, ticket: int, mode: Any) -> bool:
        """Re-checked in full after every wake-up: join the current mode unless an earlier call waits for
        another; switch modes only when no call runs and no earlier call waits."""
        ahead = [waiting for number, waiting in self._queue if number < ticket]
        if self._mode == mode and self._mode is not self._UNKNOWN:
            return all(waiting == mode for waiting in ahead)
        return self._users == 0 and not ahead


def phrase_warnings(pipe: Any, request: GenerationRequest) -> list[str]:
    """Say when a phrase is longer than the text encoder reads (it is truncated at 77 tokens).

    SD 3 and FLUX read long phrases with T5: ``pico.pipelines.flow`` says what they cut.
    """
    tokenizer = getattr(pipe, "tokenizer", None) if not is_flow(pipe) else None
    notes = []
    for key in ("Phrase", "NegativePhrase"):
        text = getattr(request, "phrase" if key == "Phrase" else "negative_phrase", None)
        if not text or tokenizer is None or len(text.encode("utf-8")) + 2 <= tokenizer.model_max_length:
            continue  # a byte-level BPE token covers at least one byte: this phrase cannot be too long
        count = len(tokenizer(text, truncation=False).input_ids)
        if count > tokenizer.model_max_length:
            notes.append(
                f"{key} is {count} tokens long; the model reads only the first {tokenizer.model_max_length}, "
                "the rest was ignored."
            )
    return notes


KIND_WORDS = {"text-to-image": "a text-to-image model", "inpainting": "an inpainting model",
              "variation": "an image-variation model"}
KIND_COMMANDS = {"text-to-image": "stable-diffusion, image-to-image or inpaint", "inpainting": "inpaint",
                 "variation": "image-variation"}


def model_kind(base: Any) -> str:
    """What a loaded pipeline can do: variation (image encoder), inpainting (9-channel UNet), or text-to-image.

    SD 3 and FLUX transformers are text-to-image models; their inpainting pipelines derive from them.
    """
    if getattr(base, "image_encoder", None) is not None and getattr(base, "text_encoder", None) is None:
        return "variation"
    unet = getattr(base, "unet", None)
    if unet is not None and unet.config.in_channels == 9:
        return "inpainting"
    return "text-to-image"


class Runner:
    """One pipeline family: its names, its request type, and how to call its Diffusers pipeline."""

    info: ClassVar[PipelineInfo]  # its names and request type, from the catalog
    default_scheduler: ClassVar[str | None] = None  # None: the model's own
    batchable: ClassVar[bool] = False  # whether requests of this family can share one pipeline call
    accepts: ClassVar[tuple[str, ...]] = ("text-to-image",)  # the kinds of model it runs (see model_kind)

    @property
    def name(self) -> str:
        """The Name in responses: "StableDiffusionXL"."""
        return self.info.name

    @property
    def route(self) -> str:
        """The REST route under /api/v1: "stable-diffusion-xl"."""
        return self.info.route

    @property
    def command(self) -> str:
        """The CLI subcommand: "stable-diffusion-xl"."""
        return self.info.command

    def derive(self, base: Any, **components: Any) -> Any:
        """The task pipeline, sharing ``base``'s weights (from_pipe), with ``components`` swapped in."""
        raise NotImplementedError

    def inputs(self, request: GenerationRequest) -> dict[str, Any]:
        """The pipeline-specific arguments of the call (prompt, image, strength...)."""
        raise NotImplementedError

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        """Metadata every image gets from its request beyond the shared fields: phrases, strength."""
        meta = {}
        if hasattr(request, "phrase"):
            meta.update(Phrase=request.phrase, NegativePhrase=request.negative_phrase)
        if hasattr(request, "strength"):
            meta["Strength"] = request.strength
        if getattr(request, "clip_skip", None):
            meta["ClipSkip"] = request.clip_skip
        return meta

    def check(self, base: Any, request: GenerationRequest) -> None:
        """Refuse a model that cannot run this pipeline, before any generation work."""
        kind = model_kind(base)
        if kind not in self.accepts:
            raise InvalidRequest(
                f"Model {request.model} is {KIND_WORDS[kind]}; {self.command} needs {KIND_WORDS[self.accepts[0]]}",
                field="Model", hint=f"Use it with {KIND_COMMANDS[kind]}, or pick another model.",
            )
        if request.vae_type != "original" and is_sdxl(base):
            from pico.schemas.requests import raise_vae_mismatch

            raise_vae_mismatch(request.vae_type, request.model)
        if is_flow(base):  # what the model's name did not tell at validation (a fine-tune on image-to-image)
            from pico.schemas.requests import check_flow_fields

            check_flow_fields(request, family_label(base))

    def batch_key(self, request: GenerationRequest) -> tuple | None:
        """What requests must share to run as one batched call (None: this family never batches)."""
        if not self.batchable:
            return None
        # SDXL encodes a missing negative phrase as zeros but "" as text: the two cannot share a call.
        no_negative = getattr(request, "negative_phrase", None) is None
        return (self.route, request.model, request.precision, request.vae_type, request.attention_slicing,
                request.scheduler, request.step_count(), request.guidance_scale, request.width, request.height,
                no_negative, getattr(request, "prompt_syntax", None), getattr(request, "clip_skip", None))

    def batch_inputs(self, requests: list[GenerationRequest]) -> dict[str, Any]:
        """The pipeline arguments of several requests run as one call (batchable families only)."""
        raise NotImplementedError

    def call(self, ctx: CallContext, requests: list[GenerationRequest], arguments: dict[str, Any]) -> list[Any]:
        """Call the pipeline with ``arguments`` and return its images; SD 3 and FLUX calls are adapted first."""
        if is_flow(ctx.pipe):
            from pico.pipelines.flow import adapt_call

            arguments = adapt_call(ctx, requests, arguments)
        else:
            from pico.pipelines.flow import unused_flow_fields

            ctx.warnings.extend(unused_flow_fields(requests[0]))
        return ctx.pipe(**arguments).images

    def run(self, ctx: CallContext, requests: list[GenerationRequest]) -> list[Generation]:
        """Generate the images of requests that share a batch key, as one call of ``ctx.pipe``."""
        started = time.perf_counter()
        first, pipe = requests[0], ctx.pipe
        seeds = [pick_seeds(request.seed, request.total) for request in requests]
        steps = first.step_count()
        stopped: list[int] = []  # the step an interrupt ended denoising at, if one did
        if len(requests) == 1:
            inputs = {**self.inputs(first), "num_images_per_prompt": first.total}
        else:
            inputs = {**self.batch_inputs(requests), "num_images_per_prompt": 1}
        callback = step_callback(pipe, ctx, stopped)
        ctx.step_end = callback.get("callback_on_step_end")
        guidance = first.guidance_scale
        embeds = None if is_flow(pipe) else weighted_phrases(pipe, requests, steps)  # T5: see flow.adapt_call
        if embeds is not None:  # A1111's syntax or long phrases: embeddings instead of the text
            inputs = {key: value for key, value in inputs.items() if key not in ("prompt", "negative_prompt")}
            inputs.update(embeds.kwargs)
            callback = embeds.step_callback(pipe, inner=callback.get("callback_on_step_end"))
            guidance = embeds.guidance_scale(guidance)
        elif getattr(first, "clip_skip", None) and diffusers_clip_skip(first.clip_skip):
            inputs["clip_skip"] = check_clip_skip(pipe, diffusers_clip_skip(first.clip_skip))  # SDXL: Diffusers' own
        every_seed = [seed for batch in seeds for seed in batch]
        arguments = {
            **inputs,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "generator": generators(every_seed),
            **callback,
        }
        seed_noise_sampler(pipe.scheduler, every_seed)
        if first.width is not None:
            arguments.update(width=first.width, height=first.height)
            ctx.size = (first.width, first.height)
        try:
            images = list(self.call(ctx, requests, arguments))
        except Cancelled:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                release_frames(exc)  # the failed call's frames hold its activations
                free_device_memory(ctx.device)
                raise OutOfMemory(f"The {ctx.device.type} device ran out of memory", hint=OOM_HINT,
                                  detail=str(exc)) from exc
            if isinstance(exc, ValueError):
                raise InvalidRequest(f"{self.name} cannot run this combination of fields",
                                     hint="The server log (or --verbose) has what the pipeline said.",
                                     detail=str(exc)) from exc
            raise
        elapsed = time.perf_counter() - started
        interrupted = [f"Interrupted after {stopped[0]} of {steps} steps: the images are not fully denoised."
                       ] if stopped else []
        generations = []
        for request, request_seeds in zip(requests, seeds):
            mine, images = images[:request.total], images[request.total:]
            notes = embeds.warnings if embeds is not None else phrase_warnings(pipe, request)
            warnings = ctx.warnings + interrupted + notes
            shared = {
                "Model": request.model,
                **self.describe(request),
                "GuidanceScale": request.guidance_scale,
                "Quality": stopped[0] if stopped else steps,
                "Precision": precision_name(ctx.dtype),
                "Scheduler": scheduler_name(pipe.scheduler),
                **({"Warnings": warnings} if warnings else {}),
            }
            metadata = [
                {**shared, "Seed": seed, "Index": index, "Width": image.width, "Height": image.height}
                for index, (seed, image) in enumerate(zip(request_seeds, mine))
            ]
            generations.append(Generation(self.name, mine, metadata, warnings, elapsed))
        return generations


