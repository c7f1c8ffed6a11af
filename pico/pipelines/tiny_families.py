"""Tiny random-weight SD 3.5, FLUX.1 and SDXL refiner (and SDXL inpainting) pipelines of the real classes.

The same idea as ``tiny``: built from configs in a fraction of a second, saved in safetensors under
``DIR/<org>/<name>`` for the real ids, loaded back through ``from_pretrained``; images are noise.
Their latents are 1/8 of the image like the real VAEs', so 64x64 images come from 8x8 latents.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD35_LARGE_MODEL,
    SD35_MEDIUM_MODEL,
    SDXL_REFINER_MODEL,
)
from pico.pipelines.tiny import (
    TEXT_HIDDEN,
    clip_text_encoder,
    clip_tokenizer,
    open_clip_text_encoder,
    sdxl_unet,
    tiny_vae,
)


T5_HIDDEN = 128  # SD 3 pads CLIP-L + CLIP-G features (32 + 64) up to T5's width, so T5 must be the widest
SD3_CLIP_G_HIDDEN = 64
T5_TOKENIZER_CLASS = "T5TokenizerFast"  # what the real repos' model_index.json names


def write_t5_tokenizer(folder: Path):
    """Write a T5-style Unigram tokenizer (``tokenizer.json``, no sentencepiece file) and return it loaded.

    Pieces as in T5: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then the word-start mark, printable ASCII and the
    100 ``<extra_id_N>`` sentinels; ``</s>`` closes every sequence. Built with ``tokenizers`` itself, so any
    transformers version reads it the same way (``T5TokenizerFast``, ``AutoTokenizer`` or
    ``PreTrainedTokenizerFast``).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, T5TokenizerFast

    special = ["<pad>", "</s>", "<unk>"]
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(100))]
    pieces = [(token, 0.0) for token in special] + [("\u2581", -2.0)]
    pieces += [(char, -5.0) for char in string.printable if not char.isspace()]
    pieces += [(token, 0.0) for token in sentinels]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)],
    )
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in special + sentinels])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512,
    ).save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text("utf-8"))
    config["tokenizer_class"] = "T5Tokenizer"  # as the real repos say; transformers 5 has no other T5 class
    config_file.write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    return T5TokenizerFast.from_pretrained(folder)


def t5_encoder(vocab_size: int):
    """A tiny ``T5EncoderModel`` (2 layers) as wide as ``T5_HIDDEN``."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size, d_model=T5_HIDDEN, d_kv=16, d_ff=64, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu",  # T5 v1.1, the encoder SD 3 and FLUX use
    )
    return T5EncoderModel(config).eval()


def flow_vae(scaling_factor: float, shift_factor: float):
    """The 16-channel VAE of SD 3 and FLUX, tiny (no quant convolutions, like theirs)."""
    return tiny_vae(
        latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
        scaling_factor=scaling_factor, shift_factor=shift_factor,
    )


def sd35_shared(scratch: Path) -> dict:
    """What both SD 3.5s share, as the real ones do: the 16-channel VAE, CLIP-L, CLIP-G, T5 and their tokenizers."""
    t5_tokenizer = write_t5_tokenizer(scratch / "t5")
    return {
        "vae": flow_vae(scaling_factor=1.5305, shift_factor=0.0609),
        "text_encoder": clip_text_encoder(with_projection=True),
        "tokenizer": clip_tokenizer(scratch),
        "text_encoder_2": clip_text_encoder(with_projection=True, hidden=SD3_CLIP_G_HIDDEN),
        "tokenizer_2": clip_tokenizer(scratch),
        "text_encoder_3": t5_encoder(len(t5_tokenizer)),
        "tokenizer_3": t5_tokenizer,
    }


def sd35(scratch: Path, large: bool = False, shared: dict | None = None):
    """A tiny SD 3.5 pipeline: medium has MMDiT-X dual attention in its first layer, large has none."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    shared = shared or sd35_shared(scratch)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
        joint_attention_dim=T5_HIDDEN, pooled_projection_dim=TEXT_HIDDEN + SD3_CLIP_G_HIDDEN,
        pos_embed_max_size=64,  # latents up to 128x128: 1024-pixel images, SD 3.5's own default size
        qk_norm="rms_norm", dual_attention_layers=() if large else (0,),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, **shared)


def flux_shared(scratch: Path) -> dict:
    """What both FLUX.1s share, as the real ones do: the 16-channel VAE, CLIP-L, T5 and their tokenizers."""
    t5_tokenizer = write_t5_tokenizer(scratch / "t5")
    return {
        "vae": flow_vae(scaling_factor=0.3611, shift_factor=0.1159),
        "text_encoder": clip_text_encoder(),
        "tokenizer": clip_tokenizer(scratch),
        "text_encoder_2": t5_encoder(len(t5_tokenizer)),
        "tokenizer_2": t5_tokenizer,
    }


def flux(scratch: Path, dev: bool = True, shared: dict | None = None):
    """A tiny FLUX.1 pipeline: dev embeds the guidance scale and shifts its schedule by image size; schnell not."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    shared = shared or flux_shared(scratch)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=T5_HIDDEN, pooled_projection_dim=TEXT_HIDDEN,
        guidance_embeds=dev, axes_dims_rope=(4, 6, 6),  # the rope axes add up to the head width
    )
    # The two real repos' scheduler configs: dev shifts with the image's token count, schnell does not.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0 if dev else 1.0, use_dynamic_shifting=dev,
        base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15,
    )
    return FluxPipeline(transformer=transformer, scheduler=scheduler, **shared)


def _sdxl_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
    )


def sdxl_refiner(scratch: Path):
    """A tiny SDXL refiner: image to image with only the OpenCLIP encoder, conditioned on an aesthetic score."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    return StableDiffusionXLImg2ImgPipeline(
        vae=tiny_vae(),
        text_encoder=None,
        text_encoder_2=open_clip_text_encoder(),
        tokenizer=None,
        tokenizer_2=clip_tokenizer(scratch),
        unet=sdxl_unet(refiner=True),
        scheduler=_sdxl_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )


def sdxl_inpaint(scratch: Path):
    """A tiny SDXL inpainting pipeline (UNet with 9 input channels), as diffusers' SDXL inpainting 0.1."""
    from diffusers import StableDiffusionXLInpaintPipeline

    return StableDiffusionXLInpaintPipeline(
        vae=tiny_vae(),
        text_encoder=clip_text_encoder(),
        text_encoder_2=open_clip_text_encoder(),
        tokenizer=clip_tokenizer(scratch),
        tokenizer_2=clip_tokenizer(scratch),
        unet=sdxl_unet(in_channels=9),
        scheduler=_sdxl_scheduler(),
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


FAMILY_MODELS = (SD35_MEDIUM_MODEL, SD35_LARGE_MODEL, FLUX_SCHNELL_MODEL, FLUX_DEV_MODEL, SDXL_REFINER_MODEL)


def save_pipeline(pipe, folder: Path) -> Path:
    """Save a tiny pipeline in safetensors; its T5 tokenizer is named ``T5TokenizerFast``, as the real repos name it."""
    pipe.save_pretrained(folder, safe_serialization=True)
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text("utf-8"))
    for name, entry in index.items():
        # Saved under the generic class it was built as (TokenizersBackend in transformers 5).
        if name.startswith("tokenizer") and isinstance(entry, list) and entry[1] not in (None, "CLIPTokenizer"):
            index[name] = ["transformers", T5_TOKENIZER_CLASS]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", "utf-8")
    return folder


def write_family_models(root: Path, scratch: Path) -> list[str]:
    """Build the tiny SD 3.5, FLUX.1 and SDXL refiner pipelines and save each under ``root/<model id>``."""
    sd3, flux1 = sd35_shared(scratch), flux_shared(scratch)
    builders = {
        SD35_MEDIUM_MODEL: lambda: sd35(scratch, shared=sd3),
        SD35_LARGE_MODEL: lambda: sd35(scratch, large=True, shared=sd3),
        FLUX_SCHNELL_MODEL: lambda: flux(scratch, dev=False, shared=flux1),
        FLUX_DEV_MODEL: lambda: flux(scratch, shared=flux1),
        SDXL_REFINER_MODEL: lambda: sdxl_refiner(scratch),
    }
    for model_id in FAMILY_MODELS:
        save_pipeline(builders[model_id](), root / model_id)
    return list(FAMILY_MODELS)
