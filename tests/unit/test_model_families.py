"""Family, prediction type and LoRA rank, told from safetensors headers alone; Diffusers agrees where it can tell."""

from __future__ import annotations

import json
import struct

import pytest

from pico.catalog.files.detect import (
    CHECKPOINT_FAMILIES,
    detect_checkpoint,
    detect_lora,
    lora_fits,
)
from pico.catalog.files.safetensors_header import BrokenFile, SafetensorsHeader, TensorInfo, read_header
from tests.unit.safetensors_files import (
    CHECKPOINTS,
    CONV_IN,
    CROSS_ATTN_K,
    U,
    lora_pair,
    peft_pair,
    unet,
    write,
)


def header(tensors: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> SafetensorsHeader:
    return SafetensorsHeader({k: TensorInfo("F16", tuple(v)) for k, v in tensors.items()}, metadata or {}, 8)


# ---- the header reader -------------------------------------------------------------------------

def test_header_gives_names_shapes_dtypes_and_metadata(tmp_path):
    path = write(tmp_path / "a.safetensors", {"x.weight": (320, 9, 3, 3), "y": (2,)}, {"ss_network_dim": "4"})
    parsed = read_header(path)
    assert parsed.tensors["x.weight"] == TensorInfo("F16", (320, 9, 3, 3))
    assert parsed.tensors["y"] == TensorInfo("F16", (2,))
    assert dict(parsed.metadata) == {"ss_network_dim": "4"}
    length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert parsed.data_offset == 8 + length


def raw_file(path, header_bytes: bytes, declared: int | None = None, tail: bytes = b"") -> object:
    length = len(header_bytes) if declared is None else declared
    path.write_bytes(struct.pack("<Q", length) + header_bytes + tail)
    return path


@pytest.mark.parametrize("content, reason", [
    (lambda p: p.write_bytes(b"abc"), "the file is 3 bytes, too short for a safetensors header"),
    (lambda p: raw_file(p, b"{}", declared=200_000_000),
     "the header claims 200,000,000 bytes, over the 100,000,000-byte limit"),
    (lambda p: raw_file(p, b"{}", declared=50), ("the header claims 50 bytes but the file has only 2 after the "
                                                 "length: truncated, or not a safetensors file")),
    (lambda p: raw_file(p, b"\x80\x03}q\x00."), "the header is not valid JSON: not a safetensors file"),
    (lambda p: raw_file(p, b"[" * 100_000 + b"]" * 100_000), "the header is not valid JSON: not a safetensors file"),
    (lambda p: raw_file(p, b"[1, 2]"), "the header is not a JSON object: not a safetensors file"),
    (lambda p: raw_file(p, b'{"__metadata__": {"a": 1}}'), "the header's __metadata__ is not a map of strings"),
    (lambda p: raw_file(p, b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}', tail=b"\0\0"),
     "tensor 'w' ends past the end of the file: truncated (an incomplete download?)"),
    (lambda p: raw_file(p, b'{"w": {"dtype": "F16", "shape": [-2], "data_offsets": [0, 0]}}'),
     "tensor 'w' has a malformed dtype, shape or data_offsets"),
    (lambda p: raw_file(p, b'{"w": 3}'), "tensor 'w' has no dtype/shape/offsets entry"),
])
def test_broken_headers_are_reported_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    content(path)
    with pytest.raises(BrokenFile) as caught:
        read_header(path)
    assert caught.value.reason == reason


# ---- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_each_checkpoint_family_from_tiny_marker_tensors(tmp_path, family):
    path = write(tmp_path / f"{family}.safetensors", CHECKPOINTS[family])
    detected = detect_checkpoint(read_header(path))
    assert (detected.family, detected.status, detected.reason) == (family, "ok", None)
    assert family in CHECKPOINT_FAMILIES


@pytest.mark.parametrize("tensors, family", [
    ({**unet(), CROSS_ATTN_K: (8, 1024)}, "sd2"),  # a UNet alone: the cross-attention width is the signal
    ({**unet(), CROSS_ATTN_K: (8, 768)}, "sd1"),
    ({**unet(9), CROSS_ATTN_K: (8, 1024)}, "sd2-inpaint"),
    ({**unet(), U + "label_emb.0.0.weight": (8, 2816)}, "sdxl"),
    ({**unet(), U + "label_emb.0.0.weight": (8, 2560)}, "sdxl-refiner"),
    ({"joint_blocks.0.x_block.attn.qkv.weight": (6, 2), "x_embedder.proj.weight": (2, 16, 2, 2)}, "sd3"),
])
def test_checkpoint_families_from_widths_and_bare_layouts(tensors, family):
    assert detect_checkpoint(header(tensors)).family == family


@pytest.mark.parametrize("tensors, reason", [
    ({"foo.weight": (2,)}, "no SD 1/2/XL, SD 3 or FLUX.1 layout found in its tensor names"),
    ({**lora_pair("lora_unet_down_blocks_0_attentions_0_proj_in", 4, 8)}, ("a LoRA, not a checkpoint: put it in a LoRA "
                                                                           "folder")),
    ({"down_blocks.0.resnets.0.conv1.weight": (2,)}, ("a single Diffusers component (UNet or transformer weights), "
                                                     "not a whole checkpoint")),
    ({"encoder.conv_in.weight": (2,), "decoder.conv_out.weight": (2,)}, "a VAE, not a checkpoint"),
    (unet(), "an SD-style UNet without the text encoders (or real widths) that tell SD 1, 2 and XL apart"),
    ({**unet(8), "cond_stage_model.transformer.x": (2,)}, "an InstructPix2Pix checkpoint; PICO does not serve it"),
    ({**unet(6), "cond_stage_model.transformer.x": (2,)}, ("a UNet with 6 input channels, which no family PICO "
                                                          "serves has")),
    ({**unet(9), "conditioner.embedders.0.model.x": (2,)}, ("an SDXL refiner with an inpainting UNet, which PICO "
                                                           "does not serve")),
    ({**unet(), "control_model.time_embed.0.weight": (2,)}, "a ControlNet, not a checkpoint"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": (2,), "img_in.weight": (4, 384), "guidance_in.in_layer.weight":
      (2,)}, "a FLUX.1 Fill checkpoint; PICO serves FLUX.1 dev and schnell"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": (2,), "img_in.weight": (4, 64),
      "distilled_guidance_layer.in_proj.bias": (2,)}, "a Chroma checkpoint; PICO serves FLUX.1 dev and schnell"),
])
def test_unknown_layouts_are_unrecognised_not_guessed(tensors, reason):
    detected = detect_checkpoint(header(tensors))
    assert (detected.family, detected.status, detected.reason) == (None, "unrecognised", reason)


@pytest.mark.parametrize("family, tensors, yaml_config, prediction", [
    ("sd2", CHECKPOINTS["sd2"], {"model": {"params": {"parameterization": "v"}}}, "v"),
    ("sd2", CHECKPOINTS["sd2"], {"model": {"params": {"linear_start": 0.00085}}}, "epsilon"),  # LDM's default
    ("sd2", CHECKPOINTS["sd2"], None, None),  # the file does not say: the family's default applies
    ("sdxl", {**CHECKPOINTS["sdxl"], "v_pred": (0,)}, None, "v"),  # ComfyUI's marker key
    ("sd1", CHECKPOINTS["sd1"], None, None),
    ("flux-dev", CHECKPOINTS["flux-dev"], {"model": {"params": {"parameterization": "v"}}}, None),  # flow matching
])
def test_prediction_type(family, tensors, yaml_config, prediction):
    detected = detect_checkpoint(header(tensors), yaml_config)
    assert (detected.family, detected.prediction) == (family, prediction)


def test_prediction_from_model_spec_metadata():
    stated = header(CHECKPOINTS["sd2"], {"modelspec.prediction_type": "v"})
    assert detect_checkpoint(stated).prediction == "v"


# Diffusers' own detection at real widths, for the layouts where it is right.
DIFFUSERS_NAMES = {"v1": "sd1", "inpainting": "sd1-inpaint", "v2": "sd2", "inpainting_v2": "sd2-inpaint",
                   "xl_base": "sdxl", "xl_inpaint": "sdxl-inpaint", "xl_refiner": "sdxl-refiner", "sd3": "sd3",
                   "sd35_medium": "sd3", "sd35_large": "sd3", "flux-dev": "flux-dev", "flux-schnell": "flux-schnell"}
XL_G_LAYER9 = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
REFINER_LAYER9 = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"
REAL_LAYOUTS = {
    "sd1": {CONV_IN: (320, 4, 3, 3), CROSS_ATTN_K: (320, 768),
            "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
            U + "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1)},
    "sd1-inpaint": {CONV_IN: (320, 9, 3, 3), CROSS_ATTN_K: (320, 768), "cond_stage_model.transformer.x": (2,)},
    "sd2": {CONV_IN: (320, 4, 3, 3), CROSS_ATTN_K: (320, 1024), "cond_stage_model.model.token_embedding.weight":
            (49408, 1024)},
    "sd2-inpaint": {CONV_IN: (320, 9, 3, 3), CROSS_ATTN_K: (320, 1024), "cond_stage_model.model.x": (2,)},
    "sdxl": {CONV_IN: (320, 4, 3, 3), XL_G_LAYER9: (1280,), "conditioner.embedders.0.transformer.x": (2,)},
    "sdxl-inpaint": {CONV_IN: (320, 9, 3, 3), XL_G_LAYER9: (1280,), "conditioner.embedders.0.transformer.x": (2,)},
    "sdxl-refiner": {CONV_IN: (384, 4, 3, 3), REFINER_LAYER9: (1280,)},
    "sd3": {U + "joint_blocks.0.context_block.adaLN_modulation.1.bias": (9216,), U + "pos_embed": (1, 36864, 1536),
            U + "x_embedder.proj.weight": (1536, 16, 2, 2)},
    "flux-dev": {"double_blocks.0.img_attn.norm.key_norm.scale": (128,), "img_in.weight": (3072, 64),
                 "guidance_in.in_layer.bias": (3072,)},
    "flux-schnell": {"double_blocks.0.img_attn.norm.key_norm.scale": (128,), "img_in.weight": (3072, 64)},
}


@pytest.mark.parametrize("family", list(REAL_LAYOUTS))
def test_same_answer_as_diffusers_at_real_widths(family):
    torch = pytest.importorskip("torch")
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    layout = REAL_LAYOUTS[family]
    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in layout.items()}
    assert DIFFUSERS_NAMES[infer_diffusers_model_type(checkpoint)] == family
    assert detect_checkpoint(header(layout)).family == family


# ---- LoRAs -------------------------------------------------------------------------------------

KOHYA_SD1_K = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
PEFT_XL_K = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"


@pytest.mark.parametrize("tensors, metadata, family, rank", [
    # cross-attention width is the signal (the down/A matrix's input width)
    (lora_pair(KOHYA_SD1_K, 4, 768), None, "sd1", 4),
    (lora_pair(KOHYA_SD1_K, 8, 1024), None, "sd2", 8),
    (peft_pair(PEFT_XL_K, 16, 2048), None, "sdxl", 16),
    (lora_pair("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora", 4, 768,
               down=".down.weight", up=".up.weight"), None, "sd1", 4),
    (lora_pair("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 4, 768), None, "sd1", 4),
    (peft_pair("transformer.transformer_blocks.0.attn.to_q", 4, 3072), None, "flux", 4),
    (peft_pair("transformer.transformer_blocks.0.attn.to_q", 4, 1536), None, "sd3", 4),
    # names that exist in one family only
    (lora_pair("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 8, 4), None, "sdxl", 8),
    (peft_pair("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", 2, 4), None, "sdxl", 2),
    (lora_pair("lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q", 4, 4), None, "sdxl", 4),
    (lora_pair("lora_unet_double_blocks_0_img_attn_qkv", 4, 4), None, "flux", 4),
    (peft_pair("transformer.single_transformer_blocks.0.attn.to_q", 4, 8), None, "flux", 4),
    (lora_pair("lora_unet_joint_blocks_0_x_block_attn_qkv", 4, 4), None, "sd3", 4),
    # kohya's and the SAI model spec's metadata, when the tensors do not tell
    (peft_pair("unet.down_blocks.0.attentions.0.proj_in", 4, 32), {"ss_base_model_version": "sdxl_base_v1-0"},
     "sdxl", 4),
    (peft_pair("unet.down_blocks.0.attentions.0.proj_in", 4, 32), {"ss_base_model_version": "sd_v1"}, "sd1", 4),
    (peft_pair("unet.down_blocks.0.attentions.0.proj_in", 4, 32), {"ss_base_model_version": "sd_v2"}, "sd2", 4),
    (peft_pair("unet.down_blocks.0.attentions.0.proj_in", 4, 32), {"ss_v2": "True"}, "sd2", 4),
    (peft_pair("transformer.x", 4, 32), {"ss_base_model_version": "flux1"}, "flux", 4),
    (peft_pair("transformer.x", 4, 32), {"ss_base_model_version": "sd3"}, "sd3", 4),
    (peft_pair("unet.x", 4, 32), {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, "sdxl", 4),
    # nothing tells: the family stays unknown, never guessed
    (peft_pair("unet.down_blocks.0.attentions.0.proj_in", 4, 32), None, None, 4),
    # the rank is the largest down matrix's
    ({**lora_pair(KOHYA_SD1_K, 4, 768), **lora_pair("lora_unet_mid_block_attentions_0_proj_in", 8, 1280)}, None,
     "sd1", 8),
])
def test_lora_family_and_rank(tensors, metadata, family, rank):
    detected = detect_lora(header(tensors, metadata))
    assert (detected.status, detected.family, detected.rank) == ("ok", family, rank)


@pytest.mark.parametrize("tensors, reason", [
    ({"lora_unet_x.hada_w1_a": (4, 4), "lora_unet_x.hada_w1_b": (4, 4)}, "LyCORIS LoHa/LoKr weights, not a plain LoRA"),
    (CHECKPOINTS["sd1"], "a whole checkpoint, not a LoRA: put it in a checkpoint folder"),
    ({"emb_params": (4, 768)}, "no LoRA weights (lora_down/lora_A and lora_up/lora_B tensors) found"),
])
def test_not_a_lora(tensors, reason):
    detected = detect_lora(header(tensors))
    assert (detected.status, detected.family, detected.reason) == ("unrecognised", None, reason)


def test_lora_fits_checkpoint_families():
    assert lora_fits("sd1", "sd1-inpaint") is True
    assert lora_fits("flux", "flux-schnell") is True
    assert lora_fits("sdxl", "sd1") is False
    assert lora_fits("sdxl", "sdxl-refiner") is False
    assert lora_fits(None, "sd1") is None


def test_real_diffusers_lora_files(tmp_path):
    """LoRAs saved by Diffusers and PEFT from the tiny pipelines: recognised, rank read, family not guessed."""
    pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from pico.pipelines.tiny import _sd, _sdxl

    for build, cls, expected in ((_sd, StableDiffusionPipeline, None), (_sdxl, StableDiffusionXLPipeline, "sdxl")):
        pipe = build(tmp_path)
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                         target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        cls.save_lora_weights(tmp_path / cls.__name__, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                              weight_name="lora.safetensors")
        detected = detect_lora(read_header(tmp_path / cls.__name__ / "lora.safetensors"))
        # the tiny SD 1 UNet is 32 wide with no metadata: nothing tells its family; tiny SDXL stacks 2 blocks
        assert (detected.status, detected.rank, detected.family) == ("ok", 4, expected)


def test_header_json_is_what_the_library_wrote(tmp_path):
    """The reader agrees with the safetensors library on a file it wrote (names, shapes, metadata)."""
    from safetensors import safe_open

    path = write(tmp_path / "x.safetensors", {"a": (3, 5), "b": (0,), "c": ()}, {"k": "v"})
    with safe_open(str(path), framework="numpy") as opened:
        expected = {name: tuple(opened.get_slice(name).get_shape()) for name in opened.keys()}  # noqa: SIM118
        metadata = opened.metadata()
    parsed = read_header(path)
    assert {name: info.shape for name, info in parsed.tensors.items()} == expected
    assert dict(parsed.metadata) == metadata
    assert json.loads(path.read_bytes()[8:parsed.data_offset])["a"]["dtype"] == "F16"
