"""Which model family a checkpoint or LoRA file is for, told from its safetensors header alone.

Tensor names decide wherever they can, since they exist at any size; a tensor's width is read
only where the width itself is the signal (the tensors are named in each rule). Where nothing
decides, the answer is "unrecognised" or an unknown family (None), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pico.catalog.files.safetensors_header import SafetensorsHeader

CHECKPOINT_FAMILIES = ("sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint", "sdxl-refiner",
                       "sd3", "flux-dev", "flux-schnell")
LORA_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux")

# A LoRA's family -> the checkpoint families it applies to (a FLUX.1 LoRA fits dev and schnell alike).
LORA_FITS = {
    "sd1": frozenset({"sd1", "sd1-inpaint"}),
    "sd2": frozenset({"sd2", "sd2-inpaint"}),
    "sdxl": frozenset({"sdxl", "sdxl-inpaint"}),
    "sdxl-refiner": frozenset({"sdxl-refiner"}),
    "sd3": frozenset({"sd3"}),
    "flux": frozenset({"flux-dev", "flux-schnell"}),
}

UNET = "model.diffusion_model."
UNET_IN = UNET + "input_blocks.0.0.weight"  # conv_in: [out, in_channels, 3, 3]
CROSS_ATTN_K = UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"  # Diffusers' "v2" key
SDXL_LABEL_EMB = UNET + "label_emb.0.0.weight"  # [_, 2816] SDXL base, [_, 2560] refiner
TRANSFORMER_PREFIXES = ("", UNET)  # FLUX and SD3 files come bare or with ComfyUI's prefix
CROSS_ATTN_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}


@dataclass(frozen=True)
class Detection:
    """A file's family and what else its header says; status "ok" or "unrecognised" with a reason."""

    family: str | None
    status: str = "ok"
    reason: str | None = None
    prediction: str | None = None  # checkpoints: "epsilon", "v", or None when the file does not say
    rank: int | None = None  # LoRAs: the largest down/A matrix rank


def unrecognised(reason: str) -> Detection:
    """A Detection for a layout PICO does not serve."""
    return Detection(family=None, status="unrecognised", reason=reason)


def lora_fits(lora_family: str | None, checkpoint_family: str | None) -> bool | None:
    """Whether a LoRA applies to a checkpoint family; None when either family is unknown."""
    if lora_family is None or checkpoint_family is None:
        return None
    return checkpoint_family in LORA_FITS.get(lora_family, ())


# ---- checkpoints ---------------------------------------------------------------------------------

def detect_checkpoint(header: SafetensorsHeader, yaml_config: Mapping | None = None) -> Detection:
    """The family of a single-file checkpoint, and its prediction type for the SD families."""
    tensors = header.tensors
    keys = tensors.keys()
    family = _transformer_family(tensors) or _unet_family(header)
    if isinstance(family, Detection):
        return family
    if family in ("sd3", "flux-dev", "flux-schnell"):
        return Detection(family)  # flow matching: no epsilon/v choice
    return Detection(family, prediction=_prediction(keys, header.metadata, yaml_config))


def _has_prefix(keys, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)


def _transformer_family(tensors: Mapping) -> str | Detection | None:
    """FLUX.1 and SD 3.x: MMDiT block names, bare or under model.diffusion_model."""
    keys = tensors.keys()
    for p in TRANSFORMER_PREFIXES:
        if f"{p}double_blocks.0.img_attn.norm.key_norm.scale" in tensors or (
                _has_prefix(keys, f"{p}double_blocks.") and f"{p}img_in.weight" in tensors):
            if f"{p}single_stream_modulation.lin.weight" in tensors:
                return unrecognised("a FLUX.2 checkpoint; PICO serves FLUX.1 dev and schnell")
            if f"{p}distilled_guidance_layer.in_proj.bias" in tensors:
                return unrecognised("a Chroma checkpoint; PICO serves FLUX.1 dev and schnell")
            image_in = tensors.get(f"{p}img_in.weight")
            channels = image_in.shape[1] if image_in is not None and len(image_in.shape) == 2 else None
            if channels == 384:  # img_in width is the signal: 64 latent + 320 mask/image channels
                return unrecognised("a FLUX.1 Fill checkpoint; PICO serves FLUX.1 dev and schnell")
            if channels == 128:
                return unrecognised("a FLUX.1 Depth/Canny checkpoint; PICO serves FLUX.1 dev and schnell")
            return "flux-dev" if f"{p}guidance_in.in_layer.weight" in tensors or \
                f"{p}guidance_in.in_layer.bias" in tensors else "flux-schnell"
        if _has_prefix(keys, f"{p}joint_blocks.") and _has_prefix(keys, f"{p}x_embedder."):
            return "sd3"
    return None


def _unet_family(header: SafetensorsHeader) -> str | Detection:
    """SD 1/2/XL: the LDM UNet's conv_in channels and which text encoders sit beside it."""
    tensors = header.tensors
    keys = tensors.keys()
    conv_in = tensors.get(UNET_IN)
    if conv_in is None or len(conv_in.shape) != 4:
        return unrecognised(_not_a_checkpoint(keys))
    if _has_prefix(keys, "control_model."):
        return unrecognised("a ControlNet, not a checkpoint")
    if "edm_mean" in tensors:
        return unrecognised("a Playground v2.5 checkpoint (EDM); PICO does not serve it")
    channels = conv_in.shape[1]
    other = {5: "an SD 2 depth-to-image checkpoint", 7: "an SD x4 upscaler checkpoint",
             8: "an InstructPix2Pix checkpoint"}
    if channels in other:
        return unrecognised(f"{other[channels]}; PICO does not serve it")
    if channels not in (4, 9):
        return unrecognised(f"a UNet with {channels} input channels, which no family PICO serves has")
    base = _unet_base(tensors)
    if base is None:
        return unrecognised("an SD-style UNet without the text encoders (or real widths) that tell SD 1, 2 "
                            "and XL apart")
    if channels == 4:
        return base
    if base == "sdxl-refiner":
        return unrecognised("an SDXL refiner with an inpainting UNet, which PICO does not serve")
    return f"{base}-inpaint"


def _unet_base(tensors: Mapping) -> str | None:
    keys = tensors.keys()
    if _has_prefix(keys, "conditioner.embedders.1.model."):
        return "sdxl"  # CLIP-L + OpenCLIP bigG
    if _has_prefix(keys, "conditioner.embedders.0.model."):
        return "sdxl-refiner"  # OpenCLIP bigG alone
    cross = tensors.get(CROSS_ATTN_K)
    width = cross.shape[-1] if cross is not None and cross.shape else None
    if _has_prefix(keys, "cond_stage_model.model.") or width == 1024:
        return "sd2"  # OpenCLIP ViT-H, as Diffusers also tells by the 1024-wide cross-attention
    if _has_prefix(keys, "cond_stage_model.transformer."):
        return "sd1"  # CLIP ViT-L
    if width == 768:
        return "sd1"
    label = tensors.get(SDXL_LABEL_EMB)
    return {2816: "sdxl", 2560: "sdxl-refiner"}.get(label.shape[-1] if label is not None and label.shape else -1)


def _not_a_checkpoint(keys) -> str:
    if any(_lora_kind(key) for key in keys):
        return "a LoRA, not a checkpoint: put it in a LoRA folder"
    if _has_prefix(keys, "down_blocks.") or _has_prefix(keys, "transformer_blocks."):
        return "a single Diffusers component (UNet or transformer weights), not a whole checkpoint"
    if _has_prefix(keys, "encoder.") and _has_prefix(keys, "decoder."):
        return "a VAE, not a checkpoint"
    return "no SD 1/2/XL, SD 3 or FLUX.1 layout found in its tensor names"


def _prediction(keys, metadata: Mapping[str, str], yaml_config: Mapping | None) -> str | None:
    """A1111's .yaml beside the file first, then a v_pred marker key, then SAI model-spec metadata."""
    if yaml_config is not None:
        params = _dig(yaml_config, "model", "params")
        value = params.get("parameterization", "eps") if isinstance(params, Mapping) else "eps"
        return "v" if value == "v" else "epsilon"
    if "v_pred" in keys:  # the marker ComfyUI and Forge read
        return "v"
    stated = metadata.get("modelspec.prediction_type")
    return stated if stated in ("v", "epsilon") else None


def _dig(mapping: Mapping, *path: str):
    for part in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(part)
    return mapping


# ---- LoRAs ---------------------------------------------------------------------------------------

DOWN_MARKERS = ("lora_down.", "lora_A.", "lora.down.", "_lora.down.", "lora_linear_layer.down.")
UP_MARKERS = ("lora_up.", "lora_B.", "lora.up.", "_lora.up.", "lora_linear_layer.up.")


def _lora_kind(key: str) -> str | None:
    if any(marker in key for marker in DOWN_MARKERS):
        return "down"
    if any(marker in key for marker in UP_MARKERS):
        return "up"
    return None


def detect_lora(header: SafetensorsHeader) -> Detection:
    """A LoRA's base family (None when nothing tells) and rank; unrecognised when it holds no LoRA."""
    tensors = header.tensors
    downs = {key: info for key, info in tensors.items() if _lora_kind(key) == "down" and len(info.shape) >= 2}
    if not downs:
        keys = tensors.keys()
        if any(".hada_w1_a" in key or ".lokr_w1" in key for key in keys):
            return unrecognised("LyCORIS LoHa/LoKr weights, not a plain LoRA")
        if UNET_IN in tensors or _has_prefix(keys, "double_blocks.") or _has_prefix(keys, "joint_blocks."):
            return unrecognised("a whole checkpoint, not a LoRA: put it in a checkpoint folder")
        return unrecognised("no LoRA weights (lora_down/lora_A and lora_up/lora_B tensors) found")
    rank = max(info.shape[0] for info in downs.values())
    family = (_lora_structure(tensors.keys()) or _lora_widths(downs) or _lora_depth(tensors.keys())
              or _lora_metadata(header.metadata))
    return Detection(family, rank=rank)


def _lora_structure(keys) -> str | None:
    """Key names that exist in one family only."""
    joined = "\n".join(keys)
    if any(mark in joined for mark in ("double_blocks", "single_blocks", "single_transformer_blocks")):
        return "flux"
    if "joint_blocks" in joined:
        return "sd3"
    if any(mark in joined for mark in ("lora_te1_", "lora_te2_", "text_encoder_2.")):
        return "sdxl"
    return None


def _lora_depth(keys) -> str | None:
    """Only SDXL's UNet stacks several transformer blocks per attention (the refiner is told by width first)."""
    stacked = ("transformer_blocks_1_", "transformer_blocks.1.")
    if any(key.startswith(("lora_unet_", "unet.")) and any(mark in key for mark in stacked) for key in keys):
        return "sdxl"
    return None


def _lora_widths(downs: Mapping) -> str | None:
    """Widths that are the signal: a down/A matrix's input width (its second dimension).

    UNet cross-attention (attn2 to_k/to_v): the text embedding width, 768 SD 1, 1024 SD 2, 2048 SDXL,
    1280 SDXL refiner. Kohya's lora_te_ text encoder: 768 CLIP-L (SD 1), 1024 OpenCLIP-H (SD 2).
    Diffusers' transformer.transformer_blocks attention: 3072 FLUX.1, else SD 3.x (1536, 2432).
    """
    for key, info in downs.items():
        flat = key.replace(".", "_")
        cross_attention = "attn2_to_k" in flat or "attn2_to_v" in flat or "attn2_processor_to_k" in flat
        if cross_attention and info.shape[1] in CROSS_ATTN_WIDTHS:
            return CROSS_ATTN_WIDTHS[info.shape[1]]
    for key, info in downs.items():
        if key.startswith("lora_te_") and info.shape[1] in (768, 1024):
            return "sd1" if info.shape[1] == 768 else "sd2"
        if key.startswith("transformer.transformer_blocks.") and ".attn.to_q." in key:
            if info.shape[1] == 3072:
                return "flux"
            if info.shape[1] in (1536, 2432):
                return "sd3"
    return None


def _lora_metadata(metadata: Mapping[str, str]) -> str | None:
    """Kohya's ss_base_model_version / ss_v2, then the SAI model spec's architecture."""
    version = metadata.get("ss_base_model_version", "")
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd3"):
        return "sd3"
    if version.startswith("flux1") or version == "flux":
        return "flux"
    if version.startswith("sd_v2") or metadata.get("ss_v2") == "True":
        return "sd2"
    if version.startswith("sd_v1"):
        return "sd1"
    architecture = metadata.get("modelspec.architecture", "").split("/")[0]
    for prefix, family in (("stable-diffusion-xl-v1-refiner", "sdxl-refiner"), ("stable-diffusion-xl", "sdxl"),
                           ("stable-diffusion-v1", "sd1"), ("stable-diffusion-v2", "sd2"),
                           ("stable-diffusion-3", "sd3"), ("flux-1", "flux")):
        if architecture.startswith(prefix):
            return family
    return None
