"""Where and how a pipeline runs: device, dtype, attention options, memory; quiet libraries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


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
    """(dtype, warning) for a Precision: half is float16, bfloat16 itself, except on the CPU, which runs float32.

    The CPU runs float32 and says so: float16 is not computed there, and bfloat16 would be many times slower.
    """
    import torch

    if precision == "full":
        return torch.float32, None
    if device.type == "cpu":
        return torch.float32, f"Precision {precision!r} is not available on the CPU; ran in float32 (Precision 'full')."
    return (torch.bfloat16 if precision == "bfloat16" else torch.float16), None


def precision_name(dtype: "torch.dtype") -> str:
    """The Precision value for a dtype."""
    import torch

    return {torch.float16: "half", torch.bfloat16: "bfloat16"}.get(dtype, "full")


def is_sdxl(pipe: Any) -> bool:
    """True for SDXL pipelines (a UNet and two CLIP text encoders, or the refiner's one); not SD 3 or FLUX."""
    return getattr(pipe, "text_encoder_2", None) is not None and getattr(pipe, "unet", None) is not None


def is_flow(pipe: Any) -> bool:
    """True for flow-matching transformer pipelines: SD 3.x and FLUX.1 (T5-conditioned, no UNet)."""
    return getattr(pipe, "transformer", None) is not None and getattr(pipe, "unet", None) is None


def family_label(pipe: Any) -> str:
    """What to call a loaded pipeline's family in messages: "FLUX.1", "Stable Diffusion 3", "SDXL", ..."""
    name = type(pipe).__name__
    if name.startswith("Flux"):
        return "FLUX.1"
    if name.startswith("StableDiffusion3"):
        return "Stable Diffusion 3"
    return "SDXL" if is_sdxl(pipe) else "Stable Diffusion"


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


def configure_attention(pipe: Any, slicing: bool, xformers: bool, fused: bool = False) -> None:
    """Set attention on the shared modules: sliced, xformers, fused QKV, or PyTorch's SDPA."""
    if is_flow(pipe):
        return  # SD 3 / FLUX transformers: PyTorch SDPA always (their runs say AttentionSlicing is not applied)
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


def model_memory(pipe: Any) -> dict[str, tuple[int, int]]:
    """(parameters, bytes of weights and buffers) of each torch module of a pipeline, by component name."""
    import torch

    memory = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            memory[name] = (sum(p.numel() for p in component.parameters()),
                            sum(t.numel() * t.element_size() for t in tensors))
    return memory


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory failures."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


_libraries_frozen = False


def freeze_libraries() -> None:
    """Hide the imported libraries from the garbage collector's full collections, once per process.

    torch, Diffusers and Transformers are about 486,000 of the 502,000 Python objects alive with
    a model loaded (a full-size SD 1.5 adds 18,000, SDXL 43,000), and a full collection walks them
    all with the GIL held: 0.2-0.4 s here, 0.9 s under the soak's load. gc.freeze() freezes every
    object alive, so it runs once, when an engine is made, before it serves anything: never at a
    model load, where another request's body in flight would be frozen and never collected once
    dropped. Models are left to the collector, so evicted and failed ones are freed.
    """
    global _libraries_frozen
    if _libraries_frozen:
        return
    _libraries_frozen = True
    import gc

    from diffusers import AutoPipelineForText2Image, DiffusionPipeline  # noqa: F401  (what a load imports)

    gc.collect()
    gc.freeze()


def release_frames(error: BaseException) -> None:
    """Clear the local variables of the finished frames ``error`` and its causes went through.

    A failed load's or call's frames hold its pipeline or its activations; kept by the error (in
    an entry, a job, a log record), they would keep that memory until the error is dropped.
    """
    import traceback

    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # frames still running (the caller's) are skipped
        pending += [current.__cause__, current.__context__]


def free_device_memory(device: "torch.device") -> None:
    """Return memory to Python and the device after a failure or an eviction."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
