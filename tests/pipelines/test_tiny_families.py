"""The tiny SD 3.5, FLUX.1 and SDXL refiner pipelines: real classes, saved and loaded as the real repos are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from transformers import PreTrainedTokenizerFast

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD35_LARGE_MODEL,
    SD35_MEDIUM_MODEL,
    SDXL_MODEL,
    SDXL_REFINER_MODEL,
)

# What the real repos' model_index.json name (pipeline, then the components that differ between families).
REAL_CLASSES = {
    SD35_MEDIUM_MODEL: ("StableDiffusion3Pipeline", {
        "transformer": "SD3Transformer2DModel", "text_encoder": "CLIPTextModelWithProjection",
        "text_encoder_2": "CLIPTextModelWithProjection", "text_encoder_3": "T5EncoderModel",
        "tokenizer_3": "T5TokenizerFast", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    FLUX_DEV_MODEL: ("FluxPipeline", {
        "transformer": "FluxTransformer2DModel", "text_encoder": "CLIPTextModel", "text_encoder_2": "T5EncoderModel",
        "tokenizer_2": "T5TokenizerFast", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    SDXL_REFINER_MODEL: ("StableDiffusionXLImg2ImgPipeline", {
        "text_encoder": None, "tokenizer": None, "text_encoder_2": "CLIPTextModelWithProjection",
        "unet": "UNet2DConditionModel"}),
}
REAL_CLASSES[SD35_LARGE_MODEL] = REAL_CLASSES[SD35_MEDIUM_MODEL]
REAL_CLASSES[FLUX_SCHNELL_MODEL] = REAL_CLASSES[FLUX_DEV_MODEL]
RED = Image.new("RGB", (64, 64), (200, 40, 40))




@pytest.fixture(scope="module")
def load(tiny_models):
    """Loads each tiny model once for this module, exactly as a real one: offline, safetensors only."""
    loaded = {}

    def pipeline(model):
        if model not in loaded:
            loaded[model] = DiffusionPipeline.from_pretrained(tiny_models / model, use_safetensors=True,
                                                              local_files_only=True)
        return loaded[model]

    return pipeline


def draw(pipe, seed=1, **extra):
    if "unet" in pipe.components and "image" not in extra:
        extra.update(image=RED, strength=1.0)  # the refiner only redraws images
    return pipe("ginger cat", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(seed), **extra).images[0]


@pytest.mark.parametrize("model", list(REAL_CLASSES))
def test_each_model_loads_as_its_real_repo_and_draws_64_pixels_from_8x8_latents(tiny_models, load, model):
    pipeline_class, components = REAL_CLASSES[model]
    index = json.loads((tiny_models / model / "model_index.json").read_text("utf-8"))
    assert index["_class_name"] == pipeline_class
    assert {name: index[name][1] for name in components} == components
    pipe = load(model)
    assert type(pipe).__name__ == pipeline_class and pipe.vae_scale_factor == 8
    image = draw(pipe)
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    assert np.array_equal(draw(pipe), image)  # same seed, same pixels
    size = sum(file.stat().st_size for file in (tiny_models / model).rglob("*") if file.is_file())
    assert size < 10 * 2**20


@pytest.mark.parametrize("model", [SD35_MEDIUM_MODEL, FLUX_DEV_MODEL])
def test_latents_are_16_channels_at_an_eighth_of_the_image(tiny_models, load, model):
    pipe = load(model)
    latents = pipe("cat", num_inference_steps=1, height=64, width=64, output_type="latent").images
    if model == FLUX_DEV_MODEL:  # FLUX packs 2x2 latent patches into tokens: 4x4 tokens of 16 * 4 channels
        assert tuple(latents.shape) == (1, 16, 64)
    else:
        assert tuple(latents.shape) == (1, 16, 8, 8)
    assert pipe.vae.config.latent_channels == 16


def test_sd35_medium_has_mmdit_x_dual_attention_and_large_has_not(tiny_models, load):
    assert tuple(load(SD35_MEDIUM_MODEL).transformer.config.dual_attention_layers) == (0,)
    assert tuple(load(SD35_LARGE_MODEL).transformer.config.dual_attention_layers) == ()
    clip_l, clip_g = (load(SD35_MEDIUM_MODEL).components[name] for name in ("text_encoder", "text_encoder_2"))
    assert clip_l.config.hidden_size != clip_g.config.hidden_size


def test_flux_dev_embeds_the_guidance_scale_and_schnell_ignores_it(tiny_models, load):
    dev, schnell = load(FLUX_DEV_MODEL), load(FLUX_SCHNELL_MODEL)
    assert dev.transformer.config.guidance_embeds and not schnell.transformer.config.guidance_embeds
    assert dev.scheduler.config.use_dynamic_shifting and not schnell.scheduler.config.use_dynamic_shifting
    assert not np.array_equal(draw(dev, guidance_scale=1.0), draw(dev, guidance_scale=7.0))
    assert np.array_equal(draw(schnell, guidance_scale=1.0), draw(schnell, guidance_scale=7.0))


@pytest.mark.parametrize(("model", "component"), [(SD35_MEDIUM_MODEL, "tokenizer_3"), (FLUX_DEV_MODEL, "tokenizer_2")])
def test_t5_tokenizer_works_offline_like_t5s(tiny_models, load, model, component):
    tokenizer = load(model).components[component]
    generic = PreTrainedTokenizerFast.from_pretrained(tiny_models / model / component)
    ids = tokenizer("A ginger cat, 42!").input_ids
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert ids[-1] == 1 and tokenizer.unk_token_id not in ids
    assert generic("A ginger cat, 42!").input_ids == ids and len(generic) == len(tokenizer)
    assert len(tokenizer) <= load(model).components[component.replace("tokenizer", "text_encoder")] \
        .config.vocab_size


def test_refiner_conditions_on_the_aesthetic_score_and_finishes_what_the_base_began(tiny_models, load):
    refiner = load(SDXL_REFINER_MODEL)
    assert refiner.config.requires_aesthetics_score and refiner.text_encoder is None
    assert not np.array_equal(draw(refiner, aesthetic_score=6.0), draw(refiner, aesthetic_score=2.0))
    base = DiffusionPipeline.from_pretrained(tiny_models / SDXL_MODEL, use_safetensors=True, local_files_only=True)
    latents = base("cat", num_inference_steps=4, height=64, width=64, denoising_end=0.5, output_type="latent").images
    assert tuple(latents.shape) == (1, 4, 8, 8)
    image = refiner("cat", image=latents, num_inference_steps=4, denoising_start=0.5, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
