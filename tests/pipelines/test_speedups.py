"""The optional speed-ups and warm-up, on the tiny models (their speed is measured in BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import torch

from pico.config import Settings
from pico.pipelines.engine import Engine
from pico.catalog.models import SDXL_FP16_VAE
from pico.schemas.requests import StableDiffusionRequest, StableDiffusionXlRequest


def sd(**body):
    return StableDiffusionRequest.parse({"Phrase": "cat", "Steps": 2, "Seed": 3, **body}, 2048 * 2048)


def test_channels_last_and_fused_qkv_give_the_same_images(tiny_models, engine):
    fast = Engine(Settings(models_dir=tiny_models, device="cpu", channels_last=True, fuse_qkv=True))
    plain = np.asarray(engine.generate(sd()).images[0]).astype(int)
    quick = np.asarray(fast.generate(sd()).images[0]).astype(int)
    assert np.abs(plain - quick).max() <= 2
    unet = fast.cache.entries()[0].value.pipeline.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}


def test_fused_attention_comes_back_after_attention_slicing(tiny_models):
    fast = Engine(Settings(models_dir=tiny_models, device="cpu", fuse_qkv=True))
    fast.generate(sd(AttentionSlicing=True))
    unet = fast.cache.entries()[0].value.pipeline.unet
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    fast.generate(sd())
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}


def test_the_fp16_sdxl_vae_is_used_only_for_sdxl_in_half_precision(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", sdxl_vae=SDXL_FP16_VAE))
    engine.generate(StableDiffusionXlRequest.parse({"Phrase": "cat", "Steps": 2}, 2048 * 2048))
    xl = next(e.value.pipeline for e in engine.cache.entries())
    assert engine._vae("original", torch.float32, xl) is None  # the CPU runs float32: the model's own VAE
    engine.generate(sd())
    sd15 = next(e.value.pipeline for e in engine.cache.entries() if "XL" not in type(e.value.pipeline).__name__)
    assert engine._vae("original", torch.float16, sd15) is None  # not SDXL: its own VAE
    swapped = engine._vae("original", torch.float16, xl)
    assert swapped.config.force_upcast is False and swapped.dtype == torch.float16
    assert engine.resolver.is_allowed(SDXL_FP16_VAE)


def test_warm_up_loads_every_preloaded_model(tiny_models):
    preload = ("sd15", "runwayml/stable-diffusion-inpainting", "sd-variation")
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", max_models=4, preload=preload))
    engine.warm_up(engine.settings.preload)
    for model in ("runwayml/stable-diffusion-v1-5", "runwayml/stable-diffusion-inpainting",
                  "lambdalabs/sd-image-variations-diffusers"):
        assert engine.is_loaded(model)
