"""Tiny LoRA files load through Diffusers, change the image at their real scale, and unload without a trace."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open
from safetensors.torch import load_file

from pico.catalog.models import SD1_MODEL, SDXL_MODEL
from pico.pipelines.tiny import DEMO_LORAS
from pico.catalog.models import FLUX_DEV_MODEL, SD35_MEDIUM_MODEL
from pico.pipelines.tiny_loras import write_tiny_lora

CASES = [(SD1_MODEL, "diffusers"), (SD1_MODEL, "kohya"), (SDXL_MODEL, "diffusers"), (SDXL_MODEL, "kohya"),
         (FLUX_DEV_MODEL, "diffusers"), (SD35_MEDIUM_MODEL, "diffusers")]



@pytest.fixture(scope="module")
def load(tiny_models):
    """Loads each tiny model once for this module."""
    loaded = {}

    def pipeline(model):
        if model not in loaded:
            loaded[model] = DiffusionPipeline.from_pretrained(tiny_models / model, use_safetensors=True,
                                                              local_files_only=True)
        return loaded[model]

    return pipeline


def draw(pipe):
    return pipe("ginger cat", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(5)).images[0]


def has_lora(module) -> bool:
    return any("lora_A" in name for name, _ in module.named_modules())


@pytest.mark.parametrize(("model", "form"), CASES)
def test_lora_changes_the_image_and_unloading_restores_it_bit_for_bit(tiny_models, load, tmp_path, model, form):
    pipe = load(model)
    path = write_tiny_lora(pipe, tmp_path / "lora.safetensors", format=form, seed=1)
    base = draw(pipe)
    pipe.load_lora_weights(str(path), adapter_name="tiny")
    try:
        changed = draw(pipe)
    finally:
        pipe.unload_lora_weights()
    assert not np.array_equal(changed, base)
    assert np.array_equal(draw(pipe), base)


@pytest.mark.parametrize("form", ["diffusers", "kohya"])
def test_alpha_survives_the_file(tiny_models, load, tmp_path, form):
    # Scale = weight * alpha / rank: alpha 8 at weight 1 is alpha 4 at weight 2, the same random matrices.
    pipe = load(SD1_MODEL)
    images = []
    for alpha, weight in ((8, 1.0), (4, 2.0)):
        path = write_tiny_lora(pipe, tmp_path / f"alpha{alpha}.safetensors", format=form, rank=4, alpha=alpha, seed=3)
        pipe.load_lora_weights(str(path), adapter_name=f"alpha{alpha}")
        pipe.set_adapters([f"alpha{alpha}"], [weight])
        images.append(draw(pipe))
        pipe.unload_lora_weights()
    assert np.array_equal(images[0], images[1])
    pipe.load_lora_weights(str(tmp_path / "alpha4.safetensors"), adapter_name="alpha4")
    try:
        assert not np.array_equal(draw(pipe), images[0])  # at weight 1 it is half as strong
    finally:
        pipe.unload_lora_weights()


def test_files_are_in_each_format_and_seeded(tiny_models, load, tmp_path):
    pipe = load(SD1_MODEL)
    diffusers_file = write_tiny_lora(pipe, tmp_path / "d.safetensors", seed=7)
    with safe_open(str(diffusers_file), "pt") as file:
        keys, metadata = set(file.keys()), file.metadata()
    assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    assert json.loads(metadata["lora_adapter_metadata"])["unet.lora_alpha"] == 8
    kohya = load_file(write_tiny_lora(pipe, tmp_path / "k.safetensors", format="kohya", seed=7))
    assert kohya["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0.alpha"].item() == 8.0
    assert kohya["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"].shape[0] == 4
    again, other = (load_file(write_tiny_lora(pipe, tmp_path / f"{seed}.safetensors", seed=seed)) for seed in (7, 8))
    first = load_file(diffusers_file)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)
    assert not has_lora(pipe.unet)  # the pipeline it was made from is left alone
    with pytest.raises(ValueError, match="UNet pipelines"):
        write_tiny_lora(tiny_models / FLUX_DEV_MODEL, tmp_path / "f.safetensors", format="kohya")


@pytest.mark.parametrize(("model", "form", "prefix"), [
    (SD1_MODEL, "kohya", "lora_te_text_model_encoder_layers_0_self_attn_q_proj"),
    (SDXL_MODEL, "diffusers", "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj"),
])
def test_text_encoder_loras_load_into_the_text_encoders(tiny_models, load, tmp_path, model, form, prefix):
    path = write_tiny_lora(tiny_models / model, tmp_path / "te.safetensors", format=form, text_encoder=True)
    with safe_open(str(path), "pt") as file:
        keys = file.keys()
    assert any(key.startswith(prefix) for key in keys)
    pipe = load(model)
    encoders = [pipe.components[name] for name in ("text_encoder", "text_encoder_2") if pipe.components.get(name)]
    pipe.load_lora_weights(str(path), adapter_name="te")
    try:
        assert all(has_lora(encoder) for encoder in encoders)
    finally:
        pipe.unload_lora_weights()
    assert not any(has_lora(encoder) for encoder in encoders)


def test_demo_loras_are_sd15_loras_in_both_formats(tiny_models, load):
    assert {file: spec[:2] for file, spec in DEMO_LORAS.items()} == {
        "loras/add-detail.safetensors": (SD1_MODEL, "diffusers"),
        "loras/style/pixel-art.safetensors": (SD1_MODEL, "kohya"),
    }
    pipe = load(SD1_MODEL)
    base = draw(pipe)
    for name, file in enumerate(DEMO_LORAS):
        pipe.load_lora_weights(str(tiny_models / file), adapter_name=f"demo{name}")
    try:
        pipe.set_adapters(["demo0"], [1.0])
        first = draw(pipe)
        pipe.set_adapters(["demo1"], [1.0])
        second = draw(pipe)
    finally:
        pipe.unload_lora_weights()
    assert not np.array_equal(first, base) and not np.array_equal(second, base)
    assert not np.array_equal(first, second)
    assert np.array_equal(draw(pipe), base)
