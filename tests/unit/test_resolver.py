"""What a request's Model and Loras mean on a server (pico.catalog.resolver): torch-free, from headers alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pico.catalog.files import ModelFiles
from pico.catalog.models import SD1_MODEL, SDXL_MODEL
from pico.catalog.resolver import CheckpointSource, ModelResolver, ModelSource, folder_family, routes_for_family
from pico.errors import InvalidRequest, ModelNotAllowed, ModelUnavailable
from pico.schemas.requests import (
    StableDiffusionImageToImageRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)
from tests.conftest import b64, png_bytes
from tests.unit.safetensors_files import CHECKPOINTS, peft_pair, write

PIXELS = 2048 * 2048
SD1_ATTN = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # PEFT key; width 768 = SD 1


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A models directory: an SD 1 Diffusers folder, checkpoints of several families, LoRAs, a pickle."""
    models = tmp_path / "models"
    folder = models / "someorg" / "my-model"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    write(models / "checkpoints" / "v15.safetensors", CHECKPOINTS["sd1"])
    write(models / "checkpoints" / "sdxl" / "juggernaut.safetensors", CHECKPOINTS["sdxl"])
    write(models / "checkpoints" / "sdxl" / "inpaint.safetensors", CHECKPOINTS["sdxl-inpaint"])
    write(models / "checkpoints" / "flux" / "dev.safetensors", CHECKPOINTS["flux-dev"])
    (models / "checkpoints" / "old.ckpt").write_bytes(b"\x80\x04 not a real pickle")
    write(models / "loras" / "detail.safetensors", peft_pair(SD1_ATTN, 4, 768))
    write(models / "loras" / "xl" / "style.safetensors", peft_pair(SD1_ATTN, 4, 2048))
    return models


def resolver(models: Path, **kw) -> ModelResolver:
    files = ModelFiles.for_models_dir(models, cache_dir=models.parent / "cache", **kw)
    return ModelResolver(models, files=files)


def sd(**body) -> StableDiffusionRequest:
    return StableDiffusionRequest.parse({"Phrase": "cat", **body}, PIXELS)


def test_ids_and_folders_resolve_as_before_and_checkpoints_by_any_of_their_names(tree):
    r = resolver(tree)
    assert isinstance(r.resolve(SD1_MODEL), ModelSource) and not r.resolve(SD1_MODEL).local
    assert r.resolve("someorg/my-model") == ModelSource("someorg/my-model", str(tree / "someorg" / "my-model"), True)
    for name in ("v15", "v15.safetensors", "V15", "sdxl/juggernaut", "sdxl/juggernaut.safetensors", "sdxl_juggernaut"):
        source = r.resolve(name)
        assert isinstance(source, CheckpointSource), name
    assert r.resolve("sdxl/juggernaut").model_id == "sdxl/juggernaut.safetensors"
    assert r.resolve("sdxl/juggernaut.safetensors [0123456789]").file.name == "sdxl/juggernaut.safetensors"  # stale hash


def test_names_that_leave_the_folder_pickles_and_unknown_names_are_refused_with_their_status(tree):
    r = resolver(tree)
    with pytest.raises(ModelUnavailable) as pickle:
        r.resolve("old")
    assert (pickle.value.status, pickle.value.field) == (422, "Model") and "pickle" in pickle.value.message.lower()
    with pytest.raises(ModelUnavailable) as unknown:
        r.resolve("sdxl/juggernot")
    assert unknown.value.status == 404 and "sdxl/juggernaut.safetensors" in unknown.value.hint
    with pytest.raises(ModelNotAllowed):
        r.resolve("nobody/nothing")  # an org/name nothing has: a hub id this server does not allow
    for bad in ("../v15", "/etc/passwd", "sdxl/../../x"):
        with pytest.raises(InvalidRequest) as caught:
            sd(Model=bad)
        assert caught.value.field == "Model" and "inside its folder" in caught.value.message


def test_the_same_name_in_two_folders_is_a_422_listing_both(tree, tmp_path):
    extra = tmp_path / "a1111" / "Stable-diffusion"
    write(extra / "v15.safetensors", CHECKPOINTS["sd1"])
    with pytest.raises(InvalidRequest) as caught:
        resolver(tree, extra_checkpoint_dirs=[extra]).resolve("v15")
    assert "v15.safetensors in checkpoints" in caught.value.message
    assert "v15.safetensors in Stable-diffusion" in caught.value.message
    assert tree.as_posix() not in caught.value.message and str(tmp_path) not in caught.value.message


def test_a_checkpoint_of_another_family_is_refused_up_front_naming_the_route_that_fits(tree):
    r = resolver(tree)
    with pytest.raises(InvalidRequest) as caught:
        r.plan(sd(Model="sdxl/juggernaut"), "stable-diffusion")
    assert caught.value.field == "Model"
    assert caught.value.message == ("Checkpoint sdxl/juggernaut.safetensors is an SDXL model; stable-diffusion "
                                    "draws with SD 1.x models")
    assert caught.value.hint.startswith("Use stable-diffusion-xl for it")
    assert r.plan(StableDiffusionXlRequest.parse({"Phrase": "x", "Model": "sdxl/juggernaut"}, PIXELS),
                  "stable-diffusion-xl").family == "sdxl"
    image = {"Phrase": "x", "ImageBase64": b64(png_bytes())}
    assert r.plan(StableDiffusionImageToImageRequest.parse({**image, "Model": "v15"}, PIXELS),
                  "stable-diffusion-image-to-image").family == "sd1"  # image-to-image takes any family
    with pytest.raises(InvalidRequest) as inpaint:
        r.plan(StableDiffusionImageToImageRequest.parse({**image, "Model": "sdxl/inpaint"}, PIXELS),
               "stable-diffusion-image-to-image")
    assert inpaint.value.hint == "Use it with stable-diffusion-inpaint."
    with pytest.raises(InvalidRequest) as flux:
        r.plan(sd(Model="flux/dev"), "stable-diffusion")
    assert flux.value.message.startswith("Checkpoint flux/dev.safetensors is FLUX.1 dev; PICO does not load")


def test_loras_are_found_checked_against_the_model_family_and_named_in_errors(tree):
    r = resolver(tree)
    plan = r.plan(sd(Model="v15", Loras=[{"Name": "detail", "Weight": 0.5}]), "stable-diffusion")
    assert [(c.file.name, c.weight, c.unet_weight) for c in plan.loras] == [("detail.safetensors", 0.5, 0.5)]
    with pytest.raises(InvalidRequest) as family:
        r.plan(sd(Model="v15", Loras=[{"Name": "detail"}, {"Name": "xl/style"}]), "stable-diffusion")
    assert family.value.field == "Loras[1].Name"
    assert family.value.message == "LoRA xl/style.safetensors is for SDXL models; the model is SD 1.x"
    with pytest.raises(ModelUnavailable) as missing:
        r.plan(sd(Phrase="cat <lora:nothing-here:1>"), "stable-diffusion")
    assert (missing.value.status, missing.value.field) == (404, "Phrase")
    with pytest.raises(InvalidRequest) as twice:
        r.plan(sd(Loras=[{"Name": "detail"}, {"Name": "detail.safetensors"}]), "stable-diffusion")
    assert twice.value.message == "LoRA detail.safetensors is applied twice (under two names)"


def test_a_tag_and_the_field_naming_one_lora_twice_is_a_422_at_validation():
    with pytest.raises(InvalidRequest) as caught:
        sd(Phrase="cat <lora:detail:0.5>", Loras=[{"Name": "detail"}])
    assert caught.value.field == "Phrase"
    assert [(lora.name, lora.weight, lora.unet_weight) for lora in sd(Phrase="cat <lora:a:0.5:1.5> <lora:b>").lora_set] \
        == [("a", 0.5, 1.5), ("b", 1.0, None)]
    assert sd(Phrase="cat <lora:a:0.5>", PromptSyntax="literal").lora_set == []  # literal: the tag is text


def test_families_of_diffusers_folders_come_from_their_configs(tmp_path):
    def folder(name: str, index: dict, unet: dict | None = None) -> Path:
        path = tmp_path / name
        (path / "unet").mkdir(parents=True)
        (path / "model_index.json").write_text(__import__("json").dumps(index))
        (path / "unet" / "config.json").write_text(__import__("json").dumps(unet or {}))
        return path

    assert folder_family(folder("a", {"_class_name": "StableDiffusionPipeline"}, {"cross_attention_dim": 1024}),
                         "me/x") == "sd2"
    assert folder_family(folder("b", {"_class_name": "StableDiffusionPipeline"}, {"cross_attention_dim": 32}),
                         "stabilityai/stable-diffusion-2-1") == "sd2"  # tiny widths: the id decides
    assert folder_family(folder("c", {"_class_name": "StableDiffusionXLInpaintPipeline"}, {"in_channels": 9}),
                         "me/y") == "sdxl-inpaint"
    assert folder_family(folder("d", {"_class_name": "StableDiffusionXLImg2ImgPipeline",
                                      "text_encoder": [None, None]}), "me/z") == "sdxl-refiner"
    assert routes_for_family("sdxl") == ["stable-diffusion-xl", "stable-diffusion-image-to-image",
                                         "stable-diffusion-inpaint"]
    assert routes_for_family("sd1-inpaint") == ["stable-diffusion-inpaint"]
    assert folder_family(folder("e", {"_class_name": "StableDiffusionUpscalePipeline"}), "me/up") == "upscaler"


@pytest.mark.parametrize("family, routes", [
    ("flux-dev", ["stable-diffusion-image-to-image", "stable-diffusion-inpaint", "flux"]),
    ("flux-schnell", ["stable-diffusion-image-to-image", "stable-diffusion-inpaint", "flux"]),
    ("sd3", ["stable-diffusion-image-to-image", "stable-diffusion-inpaint", "stable-diffusion-3"]),
    ("sd2", ["stable-diffusion-2", "stable-diffusion-image-to-image", "stable-diffusion-inpaint"]),
    ("sdxl-refiner", ["stable-diffusion-image-to-image", "stable-diffusion-inpaint"]),
    ("sd1-variation", ["stable-diffusion-image-variation"]),
    ("upscaler", ["upscale"]),
    ("nonsense", []),
])
def test_each_family_lists_the_routes_it_runs_on(family, routes):
    assert routes_for_family(family) == routes


def test_the_listing_says_which_checkpoints_pico_cannot_load(tree):
    from pico.catalog.listing import models_listing

    for name, index, part, config in [
            ("black-forest-labs/FLUX.1-dev", "FluxPipeline", "transformer", {"guidance_embeds": True}),
            ("stabilityai/stable-diffusion-x4-upscaler", "StableDiffusionUpscalePipeline", "unet", {})]:
        (tree / name / part).mkdir(parents=True)
        (tree / name / "model_index.json").write_text(json.dumps({"_class_name": index}))
        (tree / name / part / "config.json").write_text(json.dumps(config))
    listing = models_listing(resolver(tree))
    flux = next(c for c in listing["Checkpoints"] if c["Name"] == "flux/dev.safetensors")
    assert (flux["Status"], flux["Pipelines"], flux["Kind"]) == ("unsupported", [], None)
    assert flux["Reason"] == ("PICO does not load FLUX.1 dev single-file checkpoints yet; "
                              "use the model's Diffusers folder")
    upscaler = next(m for m in listing["Models"] if m["Id"] == "stabilityai/stable-diffusion-x4-upscaler")
    assert (upscaler["Kind"], upscaler["Pipelines"]) == ("upscaler", ["upscale"])
    dev = next(m for m in listing["Models"] if m["Id"] == "black-forest-labs/FLUX.1-dev")
    assert dev["Pipelines"] == ["stable-diffusion-image-to-image", "stable-diffusion-inpaint", "flux"]


def test_the_text_to_image_route_follows_a_checkpoints_family(tree):
    r = resolver(tree)
    assert r.text_to_image_pipeline("sdxl/juggernaut").route == "stable-diffusion-xl"
    assert r.text_to_image_pipeline("v15").route == "stable-diffusion"
    assert r.text_to_image_pipeline("someorg/my-model").route == "stable-diffusion-xl"  # its model_index says XL
    assert r.text_to_image_pipeline(SDXL_MODEL).route == "stable-diffusion-xl"


def test_the_catalog_imports_no_torch():
    code = ("import sys; import pico.catalog.resolver, pico.catalog.listing, pico.catalog.checkpoint_configs; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_request_that_loads_no_model_is_not_checked_against_the_models(tmp_path):
    from pico.schemas.requests import UpscaleRequest

    nothing = ModelResolver(tmp_path, files=None, allow_any=False)
    image = b64(png_bytes((32, 32)))
    lanczos = UpscaleRequest.parse({"ImageBase64": image, "Upscaler": "Lanczos", "Model": "someone/else"}, PIXELS)
    assert nothing.plan(lanczos, "upscale") is None
    x4 = UpscaleRequest.parse({"ImageBase64": image, "Upscaler": "SD x4", "Model": "someone/else"}, PIXELS)
    with pytest.raises(ModelNotAllowed):
        nothing.plan(x4, "upscale")
