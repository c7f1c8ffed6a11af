"""Single files written in the original layout load back through Diffusers' own converters, bit for bit."""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    infer_diffusers_model_type,
)
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    SD1_INPAINT_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SDXL_INPAINT_MODEL,
    SDXL_MODEL,
    SDXL_REFINER_MODEL,
)
from pico.pipelines.ldm_export import pipeline_to_ldm, write_single_file
from pico.pipelines.tiny import DEMO_CHECKPOINTS
from pico.pipelines.tiny_families import save_pipeline, sdxl_inpaint

# Model -> what Diffusers' detection says of its single file. The tiny SD 2 reads as "v1": Diffusers
# recognises SD 2 only by a 1024-wide cross-attention at input_blocks.2.1, which a tiny model lacks.
FAMILIES = {
    SD1_MODEL: "v1",
    SD1_INPAINT_MODEL: "inpainting",
    SD2_MODEL: "v1",
    SDXL_MODEL: "xl_base",
    SDXL_REFINER_MODEL: "xl_refiner",
    SDXL_INPAINT_MODEL: "xl_inpaint",
}
RED = Image.new("RGB", (64, 64), (200, 40, 40))
MASK = Image.new("L", (64, 64), 0)
MASK.paste(255, (32, 0, 64, 64))



@pytest.fixture(scope="module")
def folders(tiny_models, tmp_path_factory):
    """The Diffusers folder of each model: the tiny models, and an SDXL inpainting one built here."""
    torch.manual_seed(0)
    inpaint = save_pipeline(sdxl_inpaint(tmp_path_factory.mktemp("scratch")),
                            tmp_path_factory.mktemp("models") / SDXL_INPAINT_MODEL)
    return {model: inpaint if model == SDXL_INPAINT_MODEL else tiny_models / model for model in FAMILIES}


def header(path):
    """The file's tensors as Diffusers' detection sees them, read from the header only."""
    class Shape:
        def __init__(self, shape):
            self.shape = shape

    with safe_open(str(path), "pt") as file:
        keys = file.keys()
        return {key: Shape(file.get_slice(key).get_shape()) for key in keys}


def draw(pipe, model):
    extra = {"image": RED, "strength": 1.0} if model == SDXL_REFINER_MODEL else {}
    if "inpaint" in model:
        extra = {"image": RED, "mask_image": MASK}
    return pipe("ginger cat", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(3), **extra).images[0]


@pytest.mark.parametrize("model", list(FAMILIES))
def test_diffusers_detects_the_family_of_each_file(folders, tmp_path, model):
    assert infer_diffusers_model_type(header(write_single_file(folders[model], tmp_path / "x.safetensors"))) \
        == FAMILIES[model]


@pytest.mark.parametrize("model", [SD1_MODEL, SD1_INPAINT_MODEL, SD2_MODEL, SDXL_MODEL, SDXL_REFINER_MODEL])
def test_round_trip_through_from_single_file_is_bit_identical(folders, tmp_path, model):
    folder = folders[model]
    path = write_single_file(folder, tmp_path / "model.safetensors")
    pipeline_class = getattr(diffusers, json.loads((folder / "model_index.json").read_text("utf-8"))["_class_name"])
    original = DiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    single = pipeline_class.from_single_file(str(path), config=str(folder), local_files_only=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(original, name, None) is None:
            assert getattr(single, name, None) is None
            continue
        expected, loaded = original.components[name].state_dict(), single.components[name].state_dict()
        assert expected.keys() == loaded.keys()
        assert [key for key in expected if not torch.equal(expected[key], loaded[key])] == []
    assert np.array_equal(draw(single, model), draw(original, model))


def test_the_layout_is_the_original_one_and_diffusers_converters_invert_it(tiny_models):
    pipe = DiffusionPipeline.from_pretrained(tiny_models / SD1_MODEL, use_safetensors=True, local_files_only=True)
    weights = pipeline_to_ldm(pipe)
    assert torch.equal(weights["model.diffusion_model.input_blocks.0.0.weight"], pipe.unet.conv_in.weight)
    assert weights["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 convolutions there
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in weights
    unet = convert_ldm_unet_checkpoint(weights, dict(pipe.unet.config))
    vae = convert_ldm_vae_checkpoint(weights, dict(pipe.vae.config))
    for converted, module in ((unet, pipe.unet), (vae, pipe.vae)):
        state = module.state_dict()
        assert converted.keys() == state.keys()
        assert all(torch.equal(converted[key], state[key]) for key in state)


@pytest.mark.parametrize(("model", "prefixes"), [
    (SD2_MODEL, {"cond_stage_model.model."}),
    (SDXL_MODEL, {"conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."}),
    (SDXL_REFINER_MODEL, {"conditioner.embedders.0.model."}),
])
def test_text_encoders_sit_where_each_family_keeps_them(tiny_models, model, prefixes):
    keys = pipeline_to_ldm(tiny_models / model).keys()
    text = {key for key in keys if key.startswith(("cond_stage_model.", "conditioner."))}
    assert {prefix for prefix in prefixes if any(key.startswith(prefix) for key in text)} == prefixes
    assert all(key.startswith(tuple(prefixes)) for key in text)
    if model != SDXL_MODEL:  # OpenCLIP alone: fused attention projections, resblocks, ln_final
        prefix = next(iter(prefixes))
        assert {f"{prefix}transformer.resblocks.0.attn.in_proj_weight", f"{prefix}ln_final.weight"} <= set(keys)


def test_a_loaded_pipeline_and_its_folder_give_the_same_file(tiny_models, tmp_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_models / SDXL_MODEL, use_safetensors=True, local_files_only=True)
    from_pipe = load_file(write_single_file(pipe, tmp_path / "a.safetensors"))
    from_folder = load_file(write_single_file(tiny_models / SDXL_MODEL, tmp_path / "b.safetensors"))
    assert from_pipe.keys() == from_folder.keys()
    assert all(torch.equal(from_pipe[key], from_folder[key]) for key in from_pipe)


def test_demo_checkpoints_are_those_of_the_tiny_models(tiny_models):
    assert DEMO_CHECKPOINTS == {"checkpoints/tiny-sd15.safetensors": SD1_MODEL,
                                "checkpoints/sdxl/tiny-sdxl.safetensors": SDXL_MODEL}
    for file, model in DEMO_CHECKPOINTS.items():
        written = load_file(tiny_models / file)
        expected = pipeline_to_ldm(tiny_models / model)
        assert written.keys() == expected.keys()
        assert all(torch.equal(written[key], expected[key]) for key in written)
    assert infer_diffusers_model_type(header(tiny_models / "checkpoints/sdxl/tiny-sdxl.safetensors")) == "xl_base"


def test_pipelines_without_a_unet_are_refused(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="UNet pipeline"):
        write_single_file(tiny_models / FLUX_DEV_MODEL, tmp_path / "flux.safetensors")
    assert not (tmp_path / "flux.safetensors").exists()
