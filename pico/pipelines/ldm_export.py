"""Diffusers -> original (LDM, "single-file") key layout, the converse of Diffusers' single-file loaders.

Diffusers reads A1111/ComfyUI checkpoints (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*`` / ``conditioner.embedders.*``) but cannot write them. These functions map a
Diffusers pipeline back, so tests and demo mode can have real single-file checkpoints of the tiny
models: ``from_single_file(path, config=<the Diffusers folder>)`` gives back the same weights.
SD 1, SD 2, SDXL base and refiner, and their inpainting variants; not SD 3 or FLUX.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "class_embedding.linear_1.": "label_emb.0.0.",
    "class_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "norm2.": "out_layers.0.", "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.", "conv_shortcut.": "skip_connection.",
}
_VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj.": "attn.out_proj.", "layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj.",
}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def unet_to_ldm(state_dict: dict[str, Any], config: dict[str, Any], prefix: str = UNET_PREFIX) -> dict[str, Any]:
    """A ``UNet2DConditionModel`` state dict in the original layout (``input_blocks``, ``middle_block``, ...)."""
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):  # a value Diffusers' own converter cannot read back either
        raise ValueError("only UNets with one layers_per_block for every block have an original layout")  # noqa: TRY004
    step = per_block + 1  # each level of the original UNet: its layers, then a down- or upsampler
    up_with_attention = {int(key.split(".")[1]) for key in state_dict if re.match(r"up_blocks\.\d+\.attentions\.", key)}
    out = {}
    for key, tensor in state_dict.items():
        if match := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            side, block, kind, layer, rest = match.groups()
            index = int(block) * step + int(layer) + (1 if side == "down" else 0)
            name = f"{'input' if side == 'down' else 'output'}_blocks.{index}."
            name += f"0.{_rename(rest, _UNET_RESNET)}" if kind == "resnets" else f"1.{rest}"
        elif match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            block, rest = match.groups()
            name = f"input_blocks.{int(block) * step + step}.0.op.{rest}"
        elif match := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            block, rest = match.groups()
            slot = 2 if int(block) in up_with_attention else 1  # after the layer's attention, if it has one
            name = f"output_blocks.{int(block) * step + per_block}.{slot}.conv.{rest}"
        elif match := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            layer, rest = match.groups()
            name = f"middle_block.{2 * int(layer)}.{_rename(rest, _UNET_RESNET)}"
        elif key.startswith("mid_block.attentions.0."):
            name = "middle_block.1." + key.removeprefix("mid_block.attentions.0.")
        else:
            renamed = _rename(key, _UNET_FIXED)
            if renamed == key:
                raise ValueError(f"no original name for UNet weight {key!r}")
            name = renamed
        out[prefix + name] = tensor
    return out


def vae_to_ldm(state_dict: dict[str, Any], prefix: str = VAE_PREFIX) -> dict[str, Any]:
    """An ``AutoencoderKL`` state dict in the original layout (``encoder.down.N.block``, ``mid.attn_1``, ...)."""
    up_blocks = {int(m.group(1)) for key in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", key))}
    out = {}
    for key, tensor in state_dict.items():
        name = key.replace("conv_shortcut.", "nin_shortcut.")
        if match := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|\w+samplers\.0)\.(.+)", name):
            part, side, block, kind, rest = match.groups()
            # The original numbers the decoder's levels from the bottom (latent) up, Diffusers from the top.
            level = int(block) if side == "down" else len(up_blocks) - 1 - int(block)
            sampler = "downsample" if side == "down" else "upsample"
            name = f"{part}.{side}.{level}.{'block' if kind == 'resnets' else sampler}.{rest}"
        elif match := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", name):
            part, layer, rest = match.groups()
            name = f"{part}.mid.block_{int(layer) + 1}.{rest}"
        elif match := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", name):
            part, rest = match.groups()
            name = f"{part}.mid.attn_1.{_rename(rest, _VAE_ATTENTION)}"
            if tensor.ndim == 2:  # the original's attention projections are 1x1 convolutions
                tensor = tensor[:, :, None, None]
        elif match := re.match(r"(encoder|decoder)\.conv_norm_out\.(.+)", name):
            name = f"{match.group(1)}.norm_out.{match.group(2)}"
        out[prefix + name] = tensor
    return out


def _text_model_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Keys under ``text_model.`` as in every CLIP checkpoint (transformers 5.6+ flattens ``CLIPTextModel``)."""
    return {key if key.startswith(("text_model.", "text_projection.")) else f"text_model.{key}": tensor
            for key, tensor in state_dict.items()}


def clip_to_ldm(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """An OpenAI CLIP text encoder (CLIP-L) in the original layout: the transformers names under ``prefix``."""
    return {prefix + key: tensor for key, tensor in _text_model_keys(state_dict).items()
            if not key.endswith("position_ids")}


def open_clip_to_ldm(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """An OpenCLIP text encoder (SD 2, SDXL's second) in OpenCLIP's layout: fused q/k/v, ``resblocks``, ``ln_final``."""
    import torch

    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    weights = _text_model_keys(state_dict)
    out = {}
    for key, tensor in weights.items():
        if key in fixed:
            out[prefix + fixed[key]] = tensor
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()  # OpenCLIP multiplies from the other side
        elif match := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            layer, rest = match.groups()
            if fused := re.match(r"self_attn\.q_proj\.(weight|bias)", rest):
                kind = fused.group(1)
                parts = [weights[f"text_model.encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(parts)
            elif not re.match(r"self_attn\.[kv]_proj\.", rest):
                out[f"{prefix}transformer.resblocks.{layer}.{_rename(rest, _OPEN_CLIP_LAYER)}"] = tensor
        elif not key.endswith("position_ids"):
            raise ValueError(f"no OpenCLIP name for text encoder weight {key!r}")
    return out


def _component_weights(source, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(state dict, config) of one pipeline component, from a loaded pipeline or a saved folder; None if absent."""
    if isinstance(source, Path):
        folder = source / name
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if not files:
            return None
        from safetensors.torch import load_file

        weights = {}
        for file in files:
            weights.update(load_file(file))
        return weights, json.loads((folder / "config.json").read_text("utf-8"))
    module = getattr(source, name, None)
    if module is None:
        return None
    return module.state_dict(), dict(module.config) if hasattr(module.config, "keys") else module.config.to_dict()


def pipeline_to_ldm(source, open_clip: bool | None = None) -> dict[str, Any]:
    """Every weight of an SD 1/2/XL pipeline (loaded, or its Diffusers folder) in the original single-file layout.

    The text encoders' layout follows the family: CLIP-L for SD 1, OpenCLIP for SD 2 (told from SD 1 by
    its UNet's linear attention projections unless ``open_clip`` says), both for SDXL, OpenCLIP alone
    for the SDXL refiner.
    """
    source = Path(source) if isinstance(source, (str, Path)) else source
    unet, vae = _component_weights(source, "unet"), _component_weights(source, "vae")
    if unet is None or vae is None:
        raise ValueError("single-file export needs a UNet pipeline (SD 1, SD 2 or SDXL) with a VAE")
    first, second = _component_weights(source, "text_encoder"), _component_weights(source, "text_encoder_2")
    out = unet_to_ldm(*unet) | vae_to_ldm(vae[0])
    if first and second:
        out |= clip_to_ldm(first[0], SDXL_CLIP_PREFIX) | open_clip_to_ldm(second[0], SDXL_OPEN_CLIP_PREFIX)
    elif second:
        out |= open_clip_to_ldm(second[0], REFINER_OPEN_CLIP_PREFIX)
    elif first:
        if open_clip is None:
            open_clip = bool(unet[1].get("use_linear_projection"))
        out |= open_clip_to_ldm(first[0], SD2_OPEN_CLIP_PREFIX) if open_clip else clip_to_ldm(first[0], SD1_CLIP_PREFIX)
    else:
        raise ValueError("single-file export needs the pipeline's text encoders")
    return out


def write_single_file(pipeline_folder_or_pipe, path: Path | str, open_clip: bool | None = None) -> Path:
    """Write an SD 1/2/XL pipeline (loaded, or its Diffusers folder) as one original-layout ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {key: tensor.contiguous() for key, tensor in pipeline_to_ldm(pipeline_folder_or_pipe, open_clip).items()}
    save_file(weights, str(path), metadata={"format": "pt"})
    return path
