"""The engine: the library's front door. A request goes in, a Generation comes out.

It owns the device, the warm model cache and the model resolver, and runs each request
through its runner: resolve the model, take its loaded weights (loading once), then run.
Transports (the CLI, the HTTP server) call :meth:`Engine.generate` and nothing below it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from pico.catalog.checkpoint_configs import CheckpointConfigs
from pico.catalog.files import CheckpointFile, FileHash
from pico.config import Settings
from pico.errors import InvalidRequest, OutOfMemory, PicoError
from pico.faults import Faults
from pico.catalog.models import VAE_MODELS, canonical, model_id
from pico.catalog.resolver import CheckpointSource, LoraChoice, ModelPlan, ModelResolver
from pico.pipelines.base import CallContext, ModeGate, WarmPipelines
from pico.pipelines.device import (
    configure_attention,
    free_device_memory,
    freeze_libraries,
    is_out_of_memory,
    is_sdxl,
    keep_vae_in_float32,
    model_memory,
    pick_device,
    pick_dtype,
    precision_name,
    quiet_libraries,
)
from pico.pipelines.loader import ModelCache, load_checkpoint, load_pipeline, load_vae
from pico.pipelines.loras import HotSwapLoraAdapters, LoraAdapters, LoraMode, lora_mode
from pico.pipelines.prompt_embeds import chunk_count
from pico.pipelines.registry import call_key, find_runner, runner_for
from pico.pipelines.speedups import CUDA_GRAPH_MODES, speed_up
from pico.pipelines.threads import GenerationThreads
from pico.prompt_syntax import plan_prompt
from pico.schemas.requests import GenerationRequest
from pico.schemas.results import Generation, PreviewCallback, StepCallback

log = logging.getLogger("pico")

LOAD_OOM_HINT = ("Load fewer models at once (--max-models), free the GPU of other processes, or start with "
                 "--offload model.")


@dataclass(frozen=True)
class ModelKey:
    """What changes the weights: the model (aliases followed, or a checkpoint's name and file version) and the dtype."""

    model_id: str  # an org/name id, or a checkpoint's name inside its folder: what status pages show
    dtype: Any
    file: tuple[str, int, float] | None = None  # a checkpoint's (real path, size, mtime): a new version reloads
    checkpoint: CheckpointFile | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.model_id} ({str(self.dtype).removeprefix('torch.')})"


@dataclass(frozen=True)
class Mode:
    """What is set on a model's shared modules for a call: attention slicing and the active LoRAs."""

    slicing: bool
    loras: LoraMode = ()
    choices: tuple[LoraChoice, ...] = field(default=(), compare=False)  # the files behind ``loras``


@dataclass
class LoadedModel:
    """A pipeline resident on the device, the task pipelines derived from it, its mode gate and LoRA adapters."""

    pipeline: Any
    gate: ModeGate
    warm: WarmPipelines
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)  # component -> (parameters, bytes)
    loras: LoraAdapters | None = None
    checkpoint_hash: FileHash | None = None  # A1111's hash of a checkpoint's file


class Engine:
    """Runs generation requests on one device with warm, shared pipelines."""

    def __init__(self, settings: Settings):
        quiet_libraries()
        self.settings = settings
        self.device = pick_device(settings.device)
        self.resolver = ModelResolver.for_settings(settings)
        self.files = self.resolver.files
        self.configs = CheckpointConfigs(self.resolver.local_folder, settings.cache_dir)
        self.faults = Faults(settings.faults)
        self.cache = ModelCache(self._read, settings.max_models, release=self._release, place=self._install,
                                discard=self._discard)
        self._vaes: dict[tuple[str, Any], Any] = {}
        self._vae_lock = threading.Lock()
        self.xformers = settings.xformers and _xformers_usable(self.device)
        # CUDA graphs belong to the thread that recorded them: keep generations on one thread per slot.
        self.threads = GenerationThreads(settings.threadsmax) \
            if settings.compile and settings.compile_mode in CUDA_GRAPH_MODES else None
        if settings.offload != "none" and self.device.type == "cpu":
            log.warning("--offload %s has no effect on the CPU; ignoring it", settings.offload)
        freeze_libraries()  # before this engine serves anything: see why there

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 on_preview: PreviewCallback | None = None) -> Generation:
        """Generate the images of a validated request; ``on_step`` sees each denoising step, ``on_preview`` too."""
        return self.generate_batch([request], on_step, on_preview)[0]

    def generate_batch(self, requests: list[GenerationRequest], on_step: StepCallback | None = None,
                       on_preview: PreviewCallback | None = None) -> list[Generation]:
        """Generate several requests that share a batch key in one pipeline call; one Generation each."""
        if self.threads is not None:
            return self.threads.call(lambda step: self._generate_batch(requests, step, on_preview), on_step)
        return self._generate_batch(requests, on_step, on_preview)

    def _generate_batch(self, requests: list[GenerationRequest], on_step: StepCallback | None,
                        on_preview: PreviewCallback | None) -> list[Generation]:
        first = requests[0]
        runner = runner_for(first)
        dtype, precision_note = pick_dtype(first.precision, self.device)
        if not first.loads_model():  # e.g. Lanczos upscaling: nothing to load
            return runner.run(CallContext(pipe=None, device=self.device, dtype=dtype, on_step=on_step), requests)
        plan = self.resolver.plan(first, runner.route)
        refiner = getattr(first, "refiner", None)
        if refiner:
            self.resolver.require_allowed(refiner)
        key = self._key(plan, dtype)
        with self.cache.use(key) as entry:
            model: LoadedModel = entry.value
            for request in requests:
                runner.check(model.pipeline, request)
            vae = self._vae(first.vae_type, dtype, model.pipeline)
            scheduler = first.scheduler or runner.default_scheduler
            mode = Mode(first.attention_slicing, lora_mode(plan.loras), plan.loras)
            with model.gate.use(mode), model.warm.lease(runner, vae, scheduler) as pipe, \
                    self._refiner(first, runner, key, scheduler) as refiner_pipe:
                ctx = CallContext(
                    pipe=pipe,
                    device=self.device,
                    dtype=dtype,
                    warnings=[precision_note] if precision_note else [],
                    on_step=on_step,
                    on_preview=on_preview,
                    fault=self.faults.at_step if self.faults.active else None,
                    refiner=refiner_pipe,
                )
                generations = runner.run(ctx, requests)
        resources = self._resources(plan, model)
        for generation in generations:
            for meta in generation.metadata:
                meta.update(resources)
        return generations

    def plan(self, request: GenerationRequest, route: str) -> ModelPlan | None:
        """What a request's Model and LoRAs are on this server, refusing what cannot run on ``route``: torch-free,
        so transports call it before queueing a request (the engine calls it again when it runs)."""
        return self.resolver.plan(request, route)

    def _resources(self, plan: ModelPlan, model: LoadedModel) -> dict[str, Any]:
        """What each image records of the files it was made with: the checkpoint and the LoRAs, with A1111's hashes."""
        resources: dict[str, Any] = {}
        if plan.checkpoint is not None:
            hashed = model.checkpoint_hash
            resources["Checkpoint"] = {"Name": plan.checkpoint.name, "Hash": hashed.shorthash if hashed else None}
        if plan.loras:
            resources["Loras"] = [
                {"Name": choice.file.name, "Weight": choice.weight,
                 **({"UnetWeight": choice.unet_weight} if choice.unet_weight != choice.weight else {}),
                 "Hash": self._lora_hash(choice)}
                for choice in plan.loras]
        return resources

    def _lora_hash(self, choice: LoraChoice) -> str | None:
        try:
            return self.files.lora_hash(choice.file).shorthash if self.files is not None else None
        except PicoError:  # removed since it was loaded: the image is made, only its record lacks the hash
            return None

    @contextmanager
    def _refiner(self, request: GenerationRequest, runner: Any, base_key: ModelKey,
                 scheduler: str | None) -> Iterator[Any]:
        """An image-to-image pipeline on the weights of the request's Refiner (loaded like any model), or None."""
        model_id = getattr(request, "refiner", None)
        if not model_id:
            yield None
            return
        key = ModelKey(canonical(model_id), base_key.dtype)
        with self.cache.use(key) as entry:
            model: LoadedModel = entry.value
            runner.check_refiner(model.pipeline, request)
            # The base's own weights as refiner: its attention gate is already held by this call.
            gate = model.gate.use(Mode(request.attention_slicing)) if key != base_key else nullcontext()
            with gate, model.warm.lease(find_runner("image-to-image"), None, scheduler) as pipe:
                yield pipe

    def batch_key(self, request: GenerationRequest) -> tuple | None:
        """What a request must share with others to run in one batched call (None: it cannot)."""
        return call_key(request, self._model_name(request.model), lambda: self._chunked_shape(request))

    def _key(self, plan: ModelPlan, dtype: Any) -> ModelKey:
        file = plan.checkpoint
        if file is None:
            return ModelKey(canonical(plan.source.model_id), dtype)
        return ModelKey(file.name, dtype, (str(file.path), file.size, file.mtime), file)

    def _model_name(self, model: str) -> str:
        """A Model as the cache keys show it: an id with its aliases followed, or a checkpoint's name."""
        try:
            source = self.resolver.resolve(model)
        except PicoError:
            return canonical(model)
        return source.model_id if isinstance(source, CheckpointSource) else canonical(model)

    def _chunked_shape(self, request: GenerationRequest) -> tuple | None:
        """The guidance weight and chunk count of a long phrase, once its model (and so its tokenizers) is loaded."""
        name = self._model_name(request.model)
        loaded = next((entry.value for entry in self.cache.entries() if entry.key.model_id == name), None)
        if loaded is None:
            return None
        steps = request.step_count()
        return (plan_prompt(request.phrase, steps).guidance_factor,
                chunk_count(loaded.pipeline, request.phrase, request.negative_phrase, steps))

    def is_loaded(self, model: str) -> bool:
        """True when ``model`` (by any of its names) is resident."""
        name = self._model_name(model)
        return any(key.model_id == name for key in self.cache.keys())

    def loaded_models(self) -> list[str]:
        """The models resident now, least recently used first."""
        return [str(key) for key in self.cache.keys()]

    def leave_a_core_free(self) -> None:
        """On a CPU device, compute on all cores but one, so a server stays responsive while it generates."""
        import torch

        threads = torch.get_num_threads()
        if self.device.type == "cpu" and threads > 1:
            torch.set_num_threads(threads - 1)

    def replicas(self) -> list[dict[str, Any]]:
        """The engine replicas behind this engine: none (a Ray backend lists its replicas)."""
        return []

    def model_status(self) -> list[dict[str, Any]]:
        """What each resident model holds: precision, parameters and bytes, in all and per component."""
        status = []
        for entry in self.cache.entries():
            memory: dict[str, tuple[int, int]] = entry.value.memory
            status.append({
                "Model": entry.key.model_id, "Precision": precision_name(entry.key.dtype),
                "Parameters": sum(p for p, _ in memory.values()), "Bytes": sum(b for _, b in memory.values()),
                "Components": {name: size for name, (_, size) in memory.items()},
                "Placement": self.device.type if self.settings.offload == "none" or self.device.type == "cpu"
                else f"cpu, {self.settings.offload} offload to {self.device.type}",
            })
        return status

    def load_times(self) -> dict[str, float]:
        """Seconds each resident model took to load."""
        return {str(entry.key): entry.load_seconds for entry in self.cache.entries()}

    def device_memory(self) -> tuple[int, int] | None:
        """(bytes allocated now, most bytes allocated since start) on a CUDA device; None elsewhere."""
        if self.device.type != "cuda":
            return None
        import torch

        return int(torch.cuda.memory_allocated(self.device)), int(torch.cuda.max_memory_allocated(self.device))

    def close(self) -> None:
        """Release every idle model and the device memory it held."""
        if self.threads is not None:
            self.threads.close()
        self.cache.clear()
        self._vaes.clear()
        free_device_memory(self.device)

    def warm_up(self, models: Iterable[str]) -> None:
        """Load models before the first request, and run a short generation on each.

        With --compile this is where compiling happens, so no user request pays for it.
        Models that cannot draw from a phrase alone (inpainting, variation) are only loaded.
        """
        for name in models:
            model = model_id(name)
            request_type = self.resolver.text_to_image_pipeline(model).request_type
            request = request_type.parse({"Phrase": "warm-up", "Steps": 2, "Model": model}, self.settings.max_pixels)
            started = time.perf_counter()
            try:
                self.generate(request)
            except InvalidRequest:
                pass  # loaded, but not a text-to-image model: nothing to warm beyond the load
            log.info("warmed up %s in %.1f s", model, time.perf_counter() - started)

    def _read(self, key: ModelKey) -> Any:
        """Read a model's weights into host memory (the cache evicts for it only once this worked)."""
        fault = self.faults.at_load if self.faults.active else None
        if key.checkpoint is not None:
            file = key.checkpoint
            config = self.configs.for_checkpoint(file.family or "", file.prediction)
            if config is None:  # the plan refuses these families; a file changed under us lands here
                raise InvalidRequest(f"Checkpoint {file.name} is of a family PICO does not load", field="Model")
            log.info("loading checkpoint %s with the %s configuration of %s", file.name, config.origin,
                     config.model_id)
            return load_checkpoint(file, config, key.dtype, fault=fault)
        return load_pipeline(self.resolver.resolve(key.model_id), key.dtype, offline=_hub_offline(), fault=fault)

    def _install(self, key: ModelKey, pipe: Any) -> LoadedModel:
        """Put a read model on the device with this engine's options; out of memory becomes OutOfMemory."""
        settings = self.settings
        try:
            if self.faults.active:
                self.faults.at_place(key.model_id)
            self._place(pipe)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(f"The {self.device.type} device ran out of memory loading a model",
                                  hint=LOAD_OOM_HINT) from exc
            raise
        # Not on MPS, where Diffusers casts the VAE to the latents' dtype in place before decoding.
        if is_sdxl(pipe) and not settings.sdxl_vae and self.device.type == "cuda":
            keep_vae_in_float32(pipe.vae)  # with --sdxl-vae its own VAE goes unused
        speed_up(pipe, channels_last=settings.channels_last, fuse_qkv=settings.fuse_qkv,
                 compile_mode=settings.compile_mode if settings.compile else None)
        loras = None
        if _takes_loras(pipe) and settings.compile and hasattr(pipe, "unet"):  # a compiled UNet keeps its structure
            loras = HotSwapLoraAdapters(pipe, settings.max_loras, settings.max_lora_rank, on_load=self._hash_lora)
        elif _takes_loras(pipe):
            loras = LoraAdapters(pipe, settings.max_loras, on_load=self._hash_lora)
        slicing = [False]

        def switch(mode: Mode) -> None:  # only while no call runs on this model (the gate's promise)
            if mode.slicing != slicing[0]:
                configure_attention(pipe, mode.slicing, self.xformers, settings.fuse_qkv)
                slicing[0] = mode.slicing
            if loras is not None:
                loras.activate(mode.choices)
            elif mode.choices:
                raise InvalidRequest(f"This model ({type(pipe).__name__}) takes no LoRAs", field="Loras")

        if self.xformers:
            configure_attention(pipe, False, True)
        checkpoint_hash = self.files.checkpoint_hash(key.checkpoint) if key.checkpoint is not None else None
        return LoadedModel(pipe, ModeGate(switch, Mode(False)), WarmPipelines(pipe), model_memory(pipe), loras,
                           checkpoint_hash)

    def _hash_lora(self, choice: LoraChoice) -> None:
        """Hash a LoRA file as it loads (it is in the page cache then), for the images' records."""
        self._lora_hash(choice)

    def _place(self, pipe: Any) -> None:
        offload = self.settings.offload
        if offload == "model" and self.device.type != "cpu":
            pipe.enable_model_cpu_offload(device=self.device)
        elif offload == "sequential" and self.device.type != "cpu":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    def _discard(self) -> None:
        """Free what a model that failed to go on the device took there (the cache holds nothing of it now)."""
        free_device_memory(self.device)

    def _release(self, model: LoadedModel) -> None:
        # the gate, the warm pipelines and the adapters hold the weights too
        model.pipeline = model.gate = model.warm = model.loras = None
        free_device_memory(self.device)

    def _vae(self, vae_type: str, dtype: Any, base: Any) -> Any:
        """The VAE swapped in for this call (loaded once per dtype), or None for the model's own.

        VaeType ema/mse name one; an SDXL model in float16 gets --sdxl-vae when set.
        """
        import torch

        if vae_type != "original":
            vae_id = VAE_MODELS[vae_type]
        elif self.settings.sdxl_vae and is_sdxl(base) and dtype == torch.float16:
            vae_id = self.settings.sdxl_vae
        else:
            return None
        with self._vae_lock:
            vae = self._vaes.get((vae_id, dtype))
            if vae is None:
                vae = load_vae(self.resolver.resolve(vae_id), dtype, offline=_hub_offline()).to(self.device)
                if vae_type == "original" and self.device.type == "cuda":  # an --sdxl-vae asking for float32
                    keep_vae_in_float32(vae)
                self._vaes[(vae_id, dtype)] = vae
            return vae


def _takes_loras(pipe: Any) -> bool:
    """Whether Diffusers can load LoRAs into this pipeline."""
    return hasattr(pipe, "load_lora_weights") and hasattr(pipe, "set_adapters")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _xformers_usable(device: Any) -> bool:
    if device.type != "cuda":
        log.warning("--xformers needs a CUDA device; using PyTorch's SDPA attention on %s", device)
        return False
    try:
        import xformers  # noqa: F401
    except ImportError:
        log.warning("--xformers: xformers is not installed (pip install 'pico[xformers]'); using PyTorch's SDPA")
        return False
    return True
