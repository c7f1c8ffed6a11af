"""Optional GPU speed-ups, each behind its own flag because each has a cost.

- channels-last memory layout for the UNet and VAE (faster convolutions on tensor cores);
- fused QKV projections (one matrix product instead of three per attention; UNets and transformers);
- ``torch.compile`` of the UNet, or of the SD 3 / FLUX transformer (minutes of compiling, paid at start
  by ``--preload``); the "reduce-overhead" and "max-autotune" modes use CUDA graphs, one per shape;
- an fp16-safe SDXL VAE (``--sdxl-vae``), so SDXL decodes without upcasting to float32.

BENCHMARKS.md records what each one does on real hardware.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pico")

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that record CUDA graphs

def speed_up(pipe: Any, *, channels_last: bool, fuse_qkv: bool, compile_mode: str | None) -> None:
    """Apply the chosen speed-ups to a freshly loaded pipeline, in place (derived pipelines share them)."""
    import torch

    if channels_last:
        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)
    transformer = getattr(pipe, "transformer", None)  # SD 3 / FLUX: the transformer is what compiles and fuses
    if fuse_qkv and hasattr(pipe, "fuse_qkv_projections") and hasattr(pipe, "unet"):
        try:
            pipe.fuse_qkv_projections()
        except ValueError as exc:  # models with added KV projections cannot fuse
            log.warning("fused QKV projections are not available for %s: %s", type(pipe).__name__, exc)
    elif fuse_qkv and transformer is not None:
        if type(transformer).__name__.startswith("Flux"):
            transformer.fuse_qkv_projections()
        else:  # SD 3.5 Medium's second (MMDiT-X) attention fails once fused, in Diffusers 0.42
            log.warning("fused QKV projections are not applied to %s", type(transformer).__name__)
    if compile_mode and hasattr(pipe, "unet"):
        pipe.unet.compile(mode=compile_mode)
    elif compile_mode and transformer is not None:
        transformer.compile(mode=compile_mode)
