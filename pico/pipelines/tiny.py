"""Tiny random-weight pipelines of the real classes, for tests and demo mode.

Each model is built from a config with random weights, saved in safetensors under
``DIR/<org>/<name>`` for every default model id, and loaded back through exactly the
same ``from_pretrained`` path as a real model. Their images are noise, by design.
"""

from __future__ import annotations

import json
from pathlib import Path

from pico.catalog.models import (
    SD1_INPAINT_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SD_X4_UPSCALER_MODEL,
    SDXL_FP16_VAE,
    SDXL_MODEL,
    VAE_MODELS,
    VARIATION_MODEL,
)

MARKER = "pico-tiny.json"
VERSION = 5  # bump when the tiny models change, so old demo folders are rebuilt
TEXT_HIDDEN = 32
# Diffusers tells an SDXL single file from an SD 1 one by the key of OpenCLIP's 10th layer, and tells its
# two text encoders apart by width: so the tiny OpenCLIP is wider than CLIP-L and has 10 layers.
OPEN_CLIP_HIDDEN = 64
OPEN_CLIP_LAYERS = 10
SEED = 0


def _byte_symbols() -> list[str]:
    """The 256 byte-level symbols of GPT-2/CLIP BPE (bytes mapped to printable unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tokenizer(folder: Path) -> None:
    """Write a byte-level CLIP tokenizer that needs no download (a vocabulary and empty merges).

    The vocabulary is passed in as a dict: transformers 5 ignores ``vocab_file=`` and would build
    a two-token vocabulary in which every character of a prompt is the unknown token.
    """
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)
    tokenizer.save_pretrained(folder)


def clip_tokenizer(scratch: Path):
    """A CLIP tokenizer written to ``scratch`` and loaded back (it needs files to exist)."""
    from transformers import CLIPTokenizer

    write_tokenizer(scratch)
    return CLIPTokenizer.from_pretrained(scratch)


VOCAB_SIZE = 256 * 2 + 2


def clip_text_encoder(with_projection: bool = False, hidden: int = TEXT_HIDDEN, layers: int = 2):
    """A tiny CLIP text encoder for the byte-level tokenizer (``CLIPTextModelWithProjection`` if asked)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        projection_dim=hidden,
        bos_token_id=VOCAB_SIZE - 2,
        eos_token_id=VOCAB_SIZE - 1,
        pad_token_id=VOCAB_SIZE - 1,
        max_position_embeddings=77,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def tiny_vae(force_upcast: bool = True, latent_channels: int = 4, **extra):
    """A tiny ``AutoencoderKL`` that downsamples 8 times, as the real ones do."""
    from diffusers import AutoencoderKL

    # Four blocks: latents are 1/8 of the image, as with the real VAEs, so a 512-pixel input
    # image costs what it would with a real model (64x64 latents), not 64 times more.
    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        norm_num_groups=32,
        layers_per_block=1,
        sample_size=64,
        force_upcast=force_upcast,
        **extra,
    )


def tiny_unet(in_channels: int = 4, cross_attention_dim: int = TEXT_HIDDEN, **extra):
    """A tiny ``UNet2DConditionModel`` (two blocks, one layer each) for 8x8 latents."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=8,  # latents of 8x8: 64x64 images by default
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(2, 4),
        **extra,
    )


def _sd(scratch: Path, *, in_channels: int = 4, v2: bool = False):
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    if v2:
        scheduler = DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
            steps_offset=1,
        )
    else:
        scheduler = PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            skip_prk_steps=True, steps_offset=1,
        )
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    return cls(
        vae=tiny_vae(),
        text_encoder=clip_text_encoder(),
        tokenizer=clip_tokenizer(scratch),
        unet=tiny_unet(in_channels=in_channels, use_linear_projection=v2),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxl_unet(in_channels: int = 4, refiner: bool = False):
    """A tiny SDXL UNet; the refiner's sees only OpenCLIP and 5 time ids (an aesthetic score for the target size)."""
    time_embed_dim = 8
    return tiny_unet(
        in_channels=in_channels,
        cross_attention_dim=OPEN_CLIP_HIDDEN if refiner else TEXT_HIDDEN + OPEN_CLIP_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=OPEN_CLIP_HIDDEN + (5 if refiner else 6) * time_embed_dim,
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
    )


def open_clip_text_encoder():
    """SDXL's second (OpenCLIP) text encoder, tiny: wider than CLIP-L and 10 layers deep, see OPEN_CLIP_LAYERS."""
    return clip_text_encoder(with_projection=True, hidden=OPEN_CLIP_HIDDEN, layers=OPEN_CLIP_LAYERS)


def _sdxl(scratch: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=clip_text_encoder(),
        text_encoder_2=open_clip_text_encoder(),
        tokenizer=clip_tokenizer(scratch),
        tokenizer_2=clip_tokenizer(scratch),
        unet=sdxl_unet(),
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, timestep_spacing="leading",
        ),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _variation():
    from diffusers import PNDMScheduler, StableDiffusionImageVariationPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=TEXT_HIDDEN, projection_dim=TEXT_HIDDEN, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=4,
        )
    ).eval()
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return StableDiffusionImageVariationPipeline(
        vae=tiny_vae(),
        image_encoder=encoder,
        unet=tiny_unet(),
        scheduler=PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            skip_prk_steps=True, steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=processor,
        requires_safety_checker=False,
    )


def is_tiny(folder: Path) -> bool:
    """True when ``folder`` holds the current tiny models written by this module."""
    try:
        return json.loads((folder / MARKER).read_text("utf-8")).get("version") == VERSION
    except (OSError, ValueError):
        return False


# Demo single-file checkpoints and LoRAs, in the ComfyUI-style folders the server reads.
DEMO_CHECKPOINTS = {
    "checkpoints/tiny-sd15.safetensors": SD1_MODEL,
    "checkpoints/sdxl/tiny-sdxl.safetensors": SDXL_MODEL,
}
DEMO_LORAS = {  # file: (model it is for, format, seed)
    "loras/add-detail.safetensors": (SD1_MODEL, "diffusers", 1),
    "loras/style/pixel-art.safetensors": (SD1_MODEL, "kohya", 2),
}


def write_tiny_models(root: Path | str) -> list[str]:
    """Build every tiny model and save it under ``root/<model id>``, with the demo checkpoints and LoRAs.

    Returns what was written: the model ids, then the files' paths relative to ``root``.
    Idempotent: a tree already written by this version is left as it is; an older one is rebuilt.
    """
    import shutil

    import torch

    from pico.pipelines.device import quiet_libraries
    from pico.pipelines.ldm_export import write_single_file
    from pico.pipelines.tiny_families import write_family_models
    from pico.pipelines.tiny_loras import write_tiny_lora
    from pico.pipelines.tiny_upscaler import tiny_upscaler

    quiet_libraries()
    root = Path(root)
    if is_tiny(root):
        marker = json.loads((root / MARKER).read_text("utf-8"))
        return marker["models"] + marker["files"]
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / ".tokenizer"
    torch.manual_seed(SEED)
    builders = {
        SD1_MODEL: lambda: _sd(scratch),
        SD2_MODEL: lambda: _sd(scratch, v2=True),
        SDXL_MODEL: lambda: _sdxl(scratch),
        SD1_INPAINT_MODEL: lambda: _sd(scratch, in_channels=9),
        VARIATION_MODEL: _variation,
        **{vae_id: tiny_vae for vae_id in VAE_MODELS.values()},
        SDXL_FP16_VAE: lambda: tiny_vae(force_upcast=False),
        SD_X4_UPSCALER_MODEL: lambda: tiny_upscaler(scratch),
    }
    for model_id, build in builders.items():
        build().save_pretrained(root / model_id, safe_serialization=True)
    models = list(builders) + write_family_models(root, scratch)
    shutil.rmtree(scratch)
    for file, model_id in DEMO_CHECKPOINTS.items():
        write_single_file(root / model_id, root / file)
    for file, (model_id, form, seed) in DEMO_LORAS.items():
        write_tiny_lora(root / model_id, root / file, format=form, seed=seed)
    files = [*DEMO_CHECKPOINTS, *DEMO_LORAS]
    (root / MARKER).write_text(json.dumps({"models": models, "files": files, "version": VERSION}), "utf-8")
    return models + files
