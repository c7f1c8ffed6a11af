"""Tiny real .safetensors files (written by the safetensors library) carrying each family's marker tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

U = "model.diffusion_model."
CONV_IN = U + "input_blocks.0.0.weight"
CROSS_ATTN_K = U + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
CLIP_L = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
OPEN_CLIP = "cond_stage_model.model.token_embedding.weight"
XL_CLIP_L = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
XL_BIG_G = "conditioner.embedders.1.model.positional_embedding"
REFINER_BIG_G = "conditioner.embedders.0.model.positional_embedding"
VAE = "first_stage_model.encoder.conv_in.weight"


def write(path: Path, tensors: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None,
          fill: int = 0) -> Path:
    """Save zero-filled (or ``fill``-valued) float16 tensors of the given shapes; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.full(shape, fill, dtype=np.float16) for name, shape in tensors.items()}
    save_file(arrays, str(path), metadata=metadata)
    return path


def unet(channels: int = 4) -> dict[str, tuple[int, ...]]:
    return {CONV_IN: (8, channels, 3, 3), U + "out.2.weight": (4, 8, 3, 3), VAE: (2, 3, 3, 3)}


# Checkpoint layouts at tiny sizes: only the markers' names matter, except where noted.
CHECKPOINTS = {
    "sd1": {**unet(), CLIP_L: (4, 8)},
    "sd1-inpaint": {**unet(9), CLIP_L: (4, 8)},
    "sd2": {**unet(), OPEN_CLIP: (4, 8)},
    "sd2-inpaint": {**unet(9), OPEN_CLIP: (4, 8)},
    "sdxl": {**unet(), XL_CLIP_L: (4, 8), XL_BIG_G: (4, 8)},
    "sdxl-inpaint": {**unet(9), XL_CLIP_L: (4, 8), XL_BIG_G: (4, 8)},
    "sdxl-refiner": {**unet(), REFINER_BIG_G: (4, 8)},
    "sd3": {U + "joint_blocks.0.context_block.attn.qkv.weight": (6, 2), U + "x_embedder.proj.weight": (2, 16, 2, 2),
            "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (4,)},
    "flux-dev": {"double_blocks.0.img_attn.norm.key_norm.scale": (2,), "img_in.weight": (4, 64),
                 "guidance_in.in_layer.weight": (4, 2)},
    "flux-schnell": {U + "double_blocks.0.img_attn.norm.key_norm.scale": (2,), U + "img_in.weight": (4, 64)},
}


def lora_pair(name: str, rank: int, width: int, out: int = 4, down: str = ".lora_down.weight",
              up: str = ".lora_up.weight") -> dict[str, tuple[int, ...]]:
    """One LoRA module: the down (A) matrix [rank, width] and the up (B) matrix [out, rank]."""
    return {name + down: (rank, width), name + up: (out, rank)}


def peft_pair(name: str, rank: int, width: int, out: int = 4) -> dict[str, tuple[int, ...]]:
    return lora_pair(name, rank, width, out, ".lora_A.weight", ".lora_B.weight")
