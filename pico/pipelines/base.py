"""The steps every pipeline shares: seeds, device and dtype, attention options, step callback, metadata.

A pipeline family is a :class:`Runner` subclass that says three things: which Diffusers
pipeline it derives from the loaded weights (:meth:`Runner.derive`), what it passes
to that pipeline (:meth:`Runner.inputs`), and what it adds to each image's metadata
(:meth:`Runner.describe`). :meth:`Runner.run` does the rest, the same way for all.
"""

from __future__ import annotations

import copy
import inspect
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from pico.errors import Cancelled, InvalidRequest, OutOfMemory
from pico.pipelines.schedulers import build_scheduler, scheduler_name
from pico.schemas.requests import MAX_SEED, GenerationRequest

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("pico")

StepCallback = Callable[[int, int], "bool | None"]
"""Called after each denoising step with (steps done, steps in all).

Returning True ends denoising early and keeps the images as they are (A1111's interrupt);
raising aborts the generation (a cancel).
"""

OOM_HINT = ("Ask for fewer images (Total), a smaller Width/Height, turn on AttentionSlicing, "
            "or start with --offload model.")


@dataclass
class Generation:
    """What a runner returns: the images, one metadata dict per image, and notes for the user."""

    name: str
    images: list["Image.Image"]
    metadata: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0


@dataclass
class CallContext:
    """What the engine hands a runner for one call: the task pipeline (this call's alone) and where it runs."""

    pipe: Any  # derived from the loaded weights for this runner, with a fresh scheduler
    device: "torch.device"
    dtype: "torch.dtype"
    warnings: list[str] = field(default_factory=list)
    on_step: StepCallback | None = None
    fault: Callable[[], None] | None = None  # fault-injection seam, called at each step


def quiet_libraries() -> None:
    """Keep Diffusers/Transformers progress bars and advice out of PICO's output."""
    import transformers  # first: importing diffusers makes transformers warn

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers
    from huggingface_hub.utils import disable_progress_bars

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def pick_device(setting: str) -> "torch.device":
    """The device for ``setting``: auto prefers CUDA, then MPS, then the CPU."""
    import torch

    if setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(precision: str, device: "torch.device") -> tuple["torch.dtype", str | None]:
    """(dtype, warning) for a Precision: half is float16 except on the CPU, where it runs float32 and says so."""
    import torch

    if precision == "full":
        return torch.float32, None
    if device.type == "cpu":
        return torch.float32, "Precision 'half' is not available on the CPU; ran in float32 (Precision 'full')."
    return torch.float16, None


def precision_name(dtype: "torch.dtype") -> str:
    """The Precision value for a dtype."""
    import torch

    return "half" if dtype == torch.float16 else "full"


def is_sdxl(pipe: Any) -> bool:
    """True for SDXL pipelines (two text encoders)."""
    return getattr(pipe, "text_encoder_2", None) is not None


def keep_vae_in_float32(vae: Any) -> None:
    """Cast a half-precision VAE that SDXL pipelines upcast on every call to float32, for good.

    SDXL's own VAE overflows in float16, so Diffusers casts it to float32 around every encode
    and decode and back afterwards, in place. Concurrent calls share that module: one call's
    cast back broke another's decode. Cast once instead, and let the VAE's parts cast their
    half-precision inputs up: the same arithmetic, for 160 MB more memory.
    """
    import torch

    if vae.dtype != torch.float16 or not vae.config.get("force_upcast", False):
        return
    vae.to(dtype=torch.float32)
    vae.register_to_config(force_upcast=False)
    for part in (vae.encoder, vae.quant_conv, vae.post_quant_conv, vae.decoder):
        if part is not None:
            part.register_forward_pre_hook(_inputs_to_float32)


def _inputs_to_float32(_module: Any, args: tuple) -> tuple:
    return tuple(arg.float() if getattr(arg, "is_floating_point", lambda: False)() else arg for arg in args)


def pick_seeds(seed: int | None, total: int) -> list[int]:
    """One seed per image: ``seed``, ``seed``+1, ... (a random start when seed is null or -1)."""
    start = secrets.randbelow(MAX_SEED + 1) if seed is None or seed < 0 else seed
    return [(start + i) % (MAX_SEED + 1) for i in range(total)]


def generators(seeds: list[int]) -> list["torch.Generator"]:
    """CPU generators, one per image, so an image depends on its seed alone, whatever the device."""
    import torch

    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def configure_attention(pipe: Any, slicing: bool, xformers: bool, fused: bool = False) -> None:
    """Set attention on the shared modules: sliced, xformers, fused QKV, or PyTorch's SDPA."""
    if slicing:
        pipe.enable_attention_slicing()
        return
    pipe.disable_attention_slicing()
    if xformers:
        pipe.enable_xformers_memory_efficient_attention()
    elif fused:
        from diffusers.models.attention_processor import FusedAttnProcessor2_0

        pipe.unet.set_attn_processor(FusedAttnProcessor2_0())
        pipe.vae.set_attn_processor(FusedAttnProcessor2_0())


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
                raise InvalidRequest(f"{runner.name} cannot run a {type(self.base).__name__}: {exc}",
                                     field="Model") from exc
            pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = copy.deepcopy(prototype)
        try:
            yield pipe
        finally:
            with self._lock:
                self._idle.setdefault(key, []).append(pipe)


class AttentionGate:
    """Lets calls that want the same attention mode run together on shared weights.

    Attention slicing is set on the modules themselves, which concurrent calls share, so a
    call that wants the other mode waits until the model is idle, then switches it. While it
    waits, newcomers in the current mode wait too, so it cannot be starved.
    """

    def __init__(self, apply: Callable[[bool], None]):
        self._apply = apply
        self._cond = threading.Condition()
        self._mode = False
        self._users = 0
        self._switching = 0  # calls waiting for the other mode

    @contextmanager
    def use(self, slicing: bool) -> Iterator[None]:
        """Hold the model in attention mode ``slicing`` for the duration of a call."""
        with self._cond:
            if self._mode != slicing:
                self._switching += 1
                while self._users and self._mode != slicing:
                    self._cond.wait()
                self._switching -= 1
            else:
                while self._switching:
                    self._cond.wait()
            if self._mode != slicing:
                self._apply(slicing)
                self._mode = slicing
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()


def phrase_warnings(pipe: Any, request: GenerationRequest) -> list[str]:
    """Say when a phrase is longer than the text encoder reads (it is truncated at 77 tokens)."""
    tokenizer = getattr(pipe, "tokenizer", None)
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


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory failures."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def settle_python_heap() -> None:
    """Move every object alive now (loaded models, libraries) out of the garbage collector's sight.

    A loaded pipeline is half a million Python objects; a full collection walks them all and
    holds the GIL for a quarter of a second, stalling every request thread. Frozen objects are
    skipped. Unfreezing, collecting and refreezing (as free_device_memory does) frees what died.
    """
    import gc

    gc.freeze()


def free_device_memory(device: "torch.device") -> None:
    """Return memory to Python and the device after a failure or an eviction."""
    import gc

    import torch

    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


KIND_WORDS = {"text-to-image": "a text-to-image model", "inpainting": "an inpainting model",
              "variation": "an image-variation model"}
KIND_COMMANDS = {"text-to-image": "stable-diffusion, image-to-image or inpaint", "inpainting": "inpaint",
                 "variation": "image-variation"}


def model_kind(base: Any) -> str:
    """What a loaded pipeline can do: variation (image encoder), inpainting (9-channel UNet), or text-to-image."""
    if getattr(base, "image_encoder", None) is not None and getattr(base, "text_encoder", None) is None:
        return "variation"
    if base.unet.config.in_channels == 9:
        return "inpainting"
    return "text-to-image"


class Runner:
    """One pipeline family: its names, its request type, and how to call its Diffusers pipeline."""

    name: ClassVar[str]  # the Name in responses: "StableDiffusionXL"
    route: ClassVar[str]  # the REST route: "stable-diffusion-xl"
    command: ClassVar[str]  # the CLI subcommand: "stable-diffusion-xl"
    request_type: ClassVar[type[GenerationRequest]]
    summary: ClassVar[str]
    default_scheduler: ClassVar[str | None] = None  # None: the model's own
    batchable: ClassVar[bool] = False  # whether requests of this family can share one pipeline call
    accepts: ClassVar[tuple[str, ...]] = ("text-to-image",)  # the kinds of model it runs (see model_kind)

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

    def batch_key(self, request: GenerationRequest) -> tuple | None:
        """What requests must share to run as one batched call (None: this family never batches)."""
        if not self.batchable:
            return None
        # SDXL encodes a missing negative phrase as zeros but "" as text: the two cannot share a call.
        no_negative = getattr(request, "negative_phrase", None) is None
        return (self.route, request.model, request.precision, request.vae_type, request.attention_slicing,
                request.scheduler, request.step_count(), request.guidance_scale, request.width, request.height,
                no_negative)

    def batch_inputs(self, requests: list[GenerationRequest]) -> dict[str, Any]:
        """The pipeline arguments of several requests run as one call (batchable families only)."""
        raise NotImplementedError

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
        arguments = {
            **inputs,
            "num_inference_steps": steps,
            "guidance_scale": first.guidance_scale,
            "generator": generators([seed for batch in seeds for seed in batch]),
            **_step_callback(pipe, steps, ctx, stopped),
        }
        if first.width is not None:
            arguments.update(width=first.width, height=first.height)
        try:
            images = list(pipe(**arguments).images)
        except Cancelled:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                free_device_memory(ctx.device)
                raise OutOfMemory(f"The {ctx.device.type} device ran out of memory: {exc}", hint=OOM_HINT) from exc
            if isinstance(exc, ValueError):
                raise InvalidRequest(f"{self.name} cannot run this request: {exc}") from exc
            raise
        elapsed = time.perf_counter() - started
        interrupted = [f"Interrupted after {stopped[0]} of {steps} steps: the images are not fully denoised."
                       ] if stopped else []
        generations = []
        for request, request_seeds in zip(requests, seeds):
            mine, images = images[:request.total], images[request.total:]
            warnings = ctx.warnings + interrupted + phrase_warnings(pipe, request)
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


def _step_callback(pipe: Any, steps: int, ctx: CallContext, stopped: list[int]) -> dict[str, Any]:
    """The pipeline's step-callback arguments, in whichever of Diffusers' two styles it takes.

    An interrupt (on_step returning True) ends denoising early; the step it ended at goes into ``stopped``.
    """
    if ctx.on_step is None and ctx.fault is None:
        return {}

    def step_done(done: int) -> bool:
        stop = False
        if ctx.on_step is not None:
            total = getattr(pipe, "_num_timesteps", None) or len(pipe.scheduler.timesteps) or steps
            stop = bool(ctx.on_step(done, total))
        if ctx.fault is not None:  # after on_step, so a held generation's job shows the step it is at
            ctx.fault()
        return stop

    if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
        def on_step_end(_pipe: Any, index: int, _timestep: Any, tensors: dict) -> dict:
            if step_done(index + 1) and not stopped:
                stopped.append(index + 1)
                _pipe._interrupt = True  # Diffusers skips the remaining steps, then decodes
            return tensors

        return {"callback_on_step_end": on_step_end}

    def legacy(index: int, _timestep: Any, _latents: Any) -> None:
        if step_done(index + 1):  # this older pipeline cannot stop early and keep its images
            raise Cancelled("The generation was interrupted")

    return {"callback": legacy, "callback_steps": 1}
