"""Tiny random LoRA files for the tiny pipelines, in the Diffusers (PEFT) format or the kohya one.

Made with PEFT on a copy of the pipeline's UNet (SD 1/2/XL) or transformer (SD 3, FLUX): both LoRA
matrices random, so a LoRA visibly changes the image, and seeded, so the same call writes the same file.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

DENOISERS = ("unet", "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _components(source, names: list[str]) -> tuple[type, dict]:
    """The pipeline class and copies of the named components (absent ones skipped), from a pipeline or folder."""
    import diffusers

    if not isinstance(source, (str, Path)):
        return type(source), {name: copy.deepcopy(getattr(source, name)) for name in names
                              if getattr(source, name, None) is not None}
    folder = Path(source)
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    parts = {}
    for name in names:
        library, class_name = index.get(name) or (None, None)
        if class_name:
            cls = getattr(importlib.import_module(library), class_name)
            parts[name] = cls.from_pretrained(folder / name, use_safetensors=True, local_files_only=True)
    return getattr(diffusers, index["_class_name"]), parts


def _with_text_model(layers: dict) -> dict:
    """Text-encoder LoRA keys under ``text_model.``, as every published LoRA has them.

    transformers 5.6+ flattens ``CLIPTextModel`` (no ``text_model.`` in its module names) while
    ``CLIPTextModelWithProjection`` keeps it; files in the wild all say ``text_model.``.
    """
    return {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in layers.items()}


def _kohya_base(unet_config) -> str:
    """kohya's ``ss_base_model_version`` of a UNet: SDXL has text-time embeddings, SD 2 linear projections."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl_base_v1-0"
    return "sd_v2" if unet_config.get("use_linear_projection") else "sd_v1"


def _kohya(layers_by_part: dict[str, dict], alpha: float, single_text_encoder: bool) -> dict:
    """PEFT LoRA layers in kohya's layout, with the real alpha (Diffusers' converter writes alpha = rank)."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    prefixed = {f"{part}.{key}": value for part, layers in layers_by_part.items() for key, value in layers.items()}
    out = {}
    for key, value in convert_state_dict_to_kohya(prefixed).items():
        if single_text_encoder:
            key = key.replace("lora_te1_", "lora_te_")  # SD 1 files name their one text encoder lora_te
        out[key] = torch.tensor(float(alpha)) if key.endswith(".alpha") else value
    return out


def write_tiny_lora(
    pipe_or_folder,
    path: Path | str,
    format: str = "diffusers",
    rank: int = 4,
    alpha: float = 8,
    seed: int = 0,
    text_encoder: bool = False,
) -> Path:
    """Write a random LoRA for a pipeline's attention layers (and its text encoders' if asked) to ``path``.

    ``format``: "diffusers" (PEFT keys and the adapter config as metadata, so ``lora_alpha`` survives) or
    "kohya" (``lora_unet_*.lora_down.weight`` + ``.alpha``; SD 1/2/XL only). The pipeline is not changed.
    """
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from safetensors.torch import save_file

    if format not in ("diffusers", "kohya"):
        raise ValueError(f"unknown LoRA format {format!r}: use 'diffusers' or 'kohya'")
    path = Path(path)
    wanted = [*DENOISERS, *(TEXT_ENCODERS if text_encoder else ())]
    pipeline_class, parts = _components(pipe_or_folder, wanted)
    # Diffusers loads LoRAs into CLIP text encoders only (not FLUX's or SD 3's T5).
    parts = {name: part for name, part in parts.items() if name in DENOISERS or type(part).__name__.startswith("CLIP")}
    if format == "kohya" and "unet" not in parts:
        raise ValueError("kohya-format LoRAs are written for UNet pipelines (SD 1, SD 2, SDXL) only")
    layers, metadata = {}, {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in parts.items():
            targets = ATTENTION if name in DENOISERS else TEXT_ATTENTION
            # init_lora_weights=False: B random too (PEFT zeroes it by default), so the LoRA changes the image.
            config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=False, target_modules=targets)
            # PEFT directly: transformers 5.24's own add_adapter demands peft >= 0.22, which is not released.
            inject_adapter_in_model(config, module, adapter_name="default")
            state = {key.replace(".default.", "."): value for key, value in module.state_dict().items()
                     if ".lora_A." in key or ".lora_B." in key}
            layers[name] = _with_text_model(state) if name in TEXT_ENCODERS else state
            metadata[name] = config.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "kohya":
        weights = _kohya(layers, alpha, single_text_encoder="text_encoder_2" not in parts)
        info = {"format": "pt", "ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                "ss_network_alpha": str(alpha), "ss_base_model_version": _kohya_base(parts["unet"].config)}
        save_file({key: value.contiguous() for key, value in weights.items()}, str(path), metadata=info)
        return path
    pipeline_class.save_lora_weights(
        path.parent,
        weight_name=path.name,
        safe_serialization=True,
        **{f"{name}_lora_layers": value for name, value in layers.items()},
        **{f"{name}_lora_adapter_metadata": value for name, value in metadata.items()},
    )
    return path
