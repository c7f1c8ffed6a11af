"""Single-file checkpoints through the engine: the same pixels as the Diffusers folder they came from, offline.

The tiny checkpoints are the demo ones (``pico.pipelines.tiny``: written from the tiny folders with
``ldm_export.write_single_file``); they load with their family's configuration folder, which in a
models directory holding the tiny defaults is that tiny folder, as a real default model would be.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pico.catalog.checkpoint_configs import CheckpointConfigs
from pico.catalog.models import SD1_MODEL, SDXL_MODEL, canonical
from pico.config import Settings
from pico.errors import InvalidRequest, ModelUnavailable
from pico.schemas.requests import (
    StableDiffusionImageToImageRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)

PIXELS = 2048 * 2048
SD15_FILE, SDXL_FILE = "tiny-sd15.safetensors", "sdxl/tiny-sdxl.safetensors"
CONFIG_FILES = ("model_index.json", "config.json", "scheduler_config.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.json")



@pytest.fixture(scope="module")
def engine(tiny_models, tmp_path_factory):
    from pico.pipelines.engine import Engine

    return Engine(Settings(models_dir=tiny_models, device="cpu", max_models=8,
                           cache_dir=tmp_path_factory.mktemp("pico-cache")))


def parse(cls, **body):
    return cls.parse({"Phrase": "ginger cat", "Steps": 3, "Seed": 7, "Width": 64, "Height": 64, **body}, PIXELS)


def pixels(generation) -> list[np.ndarray]:
    return [np.asarray(image) for image in generation.images]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(pixels(a), pixels(b)))


CASES = [(StableDiffusionRequest, SD1_MODEL, SD15_FILE), (StableDiffusionXlRequest, SDXL_MODEL, SDXL_FILE)]


@pytest.mark.parametrize("cls, folder, file", CASES, ids=["sd1", "sdxl"])
def test_a_checkpoint_draws_what_its_folder_draws_on_every_route(engine, tiny_models, image_b64, mask_b64,
                                                                cls, folder, file):
    for kind, body in ((cls, {}), (StableDiffusionImageToImageRequest, {"ImageBase64": image_b64}),
                       (StableDiffusionInpaintRequest, {"ImageBase64": image_b64, "MaskImageBase64": mask_b64})):
        by_folder = engine.generate(parse(kind, Model=folder, Total=2, **body))
        by_file = engine.generate(parse(kind, Model=file, Total=2, **body))
        assert same(by_folder, by_file), kind.__name__
    digest = hashlib.sha256((tiny_models / "checkpoints" / file).read_bytes()).hexdigest()
    assert by_file.metadata[0]["Checkpoint"] == {"Name": file, "Hash": digest[:10]}
    assert "Checkpoint" not in by_folder.metadata[0]
    assert f"{file} (float32)" in engine.loaded_models() and engine.is_loaded(file.removesuffix(".safetensors"))
    assert not any(str(tiny_models) in name for name in engine.loaded_models())


def test_a_checkpoint_takes_the_vae_swap_and_is_named_any_way_a1111_names_it(engine, tiny_models):
    mse_folder = engine.generate(parse(StableDiffusionRequest, Model=SD1_MODEL, VaeType="mse"))
    mse_file = engine.generate(parse(StableDiffusionRequest, Model="tiny-sd15", VaeType="mse"))
    own = engine.generate(parse(StableDiffusionRequest, Model="tiny-sd15"))
    assert same(mse_folder, mse_file) and not same(mse_file, own)
    digest = hashlib.sha256((tiny_models / "checkpoints" / SD15_FILE).read_bytes()).hexdigest()
    loads = engine.cache.loads
    for name in (f"{SD15_FILE} [{digest[:10]}]", digest[:10], "TINY-SD15"):
        assert same(engine.generate(parse(StableDiffusionRequest, Model=name)), own), name
    assert engine.cache.loads == loads  # one file, one cache entry, whatever it is called


def test_a_checkpoint_changed_on_disk_is_loaded_again(engine, tiny_models, tmp_path):
    from pico.pipelines.engine import Engine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    for folder in (SD1_MODEL,):
        shutil.copytree(tiny_models / folder, models / folder)
    file = shutil.copy(tiny_models / "checkpoints" / SD15_FILE, models / "checkpoints" / "mine.safetensors")
    own = Engine(Settings(models_dir=models, device="cpu", cache_dir=tmp_path / "cache"))
    first = own.generate(parse(StableDiffusionRequest, Model="mine"))
    assert own.cache.loads == 1
    os.utime(file, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    own.files.refresh()
    again = own.generate(parse(StableDiffusionRequest, Model="mine"))
    assert own.cache.loads == 2 and same(first, again)


def test_a_yaml_beside_the_file_sets_v_prediction_as_a1111_reads_it(engine, tiny_models, tmp_path):
    from pico.pipelines.engine import Engine

    models = tmp_path / "models"
    shutil.copytree(tiny_models / SD1_MODEL, models / SD1_MODEL)
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_models / "checkpoints" / SD15_FILE, models / "checkpoints" / "v.safetensors")
    (models / "checkpoints" / "v.yaml").write_text("model:\n  params:\n    parameterization: \"v\"\n")
    own = Engine(Settings(models_dir=models, device="cpu", cache_dir=tmp_path / "cache"))
    v = own.generate(parse(StableDiffusionRequest, Model="v"))
    loaded = next(entry.value for entry in own.cache.entries())
    assert loaded.pipeline.scheduler.config.prediction_type == "v_prediction"
    assert not same(v, engine.generate(parse(StableDiffusionRequest, Model=SD15_FILE)))


def config_only_copy(folder: Path, target: Path) -> Path:
    """A Diffusers folder's configuration files without any weights: what a skeleton is."""
    for path in folder.rglob("*"):
        if path.is_file() and path.name in CONFIG_FILES:
            (target / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.relative_to(folder))
    assert not list(target.rglob("*.safetensors"))
    return target


def test_the_built_in_configuration_path_loads_a_checkpoint_from_configuration_files_alone(engine, tiny_models,
                                                                                           tmp_path):
    """The skeleton path with skeletons of the tiny models' sizes: shipped ones are full-size (see the next test)."""
    from pico.pipelines.engine import Engine

    skeletons = tmp_path / "skeletons"
    for model in (SD1_MODEL, SDXL_MODEL):
        config_only_copy(tiny_models / model, skeletons / canonical(model))
    models = tmp_path / "models"  # checkpoints only: no default model to take the configuration from
    for file in (SD15_FILE, SDXL_FILE):
        (models / "checkpoints" / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_models / "checkpoints" / file, models / "checkpoints" / file)
    own = Engine(Settings(models_dir=models, device="cpu", cache_dir=tmp_path / "cache"))
    own.configs = CheckpointConfigs(own.resolver.local_folder, tmp_path / "cache", skeletons=skeletons,
                                    use_hub_cache=False)
    for cls, folder, file in CASES:
        assert own.configs.for_checkpoint(own.resolver.resolve(file).file.family, None).origin == "built-in"
        assert same(own.generate(parse(cls, Model=file)), engine.generate(parse(cls, Model=folder))), file


def test_a_checkpoint_that_does_not_fit_its_configuration_is_a_422_without_server_paths(tmp_path, tiny_models):
    from pico.pipelines.engine import Engine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_models / "checkpoints" / SD15_FILE, models / "checkpoints" / SD15_FILE)
    own = Engine(Settings(models_dir=models, device="cpu", cache_dir=tmp_path / "cache"))
    with pytest.raises(ModelUnavailable) as caught:  # the shipped SD 1.5 configuration is full-size
        own.generate(parse(StableDiffusionRequest, Model=SD15_FILE))
    error = caught.value
    assert (error.status, error.field) == (422, "Model")
    assert error.message == ("Checkpoint tiny-sd15.safetensors could not be loaded as an SD 1.x model: its weights do "
                             "not fit the SD 1.x layout (built-in configuration of runwayml/stable-diffusion-v1-5)")
    assert str(tmp_path) not in error.message + (error.hint or "")
    assert own.cache.keys() == []


def test_wrong_routes_and_unloadable_files_are_refused_before_any_load(engine, tiny_models, tmp_path):
    loads = engine.cache.loads
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(parse(StableDiffusionRequest, Model="sdxl/tiny-sdxl"))
    assert caught.value.hint.startswith("Use stable-diffusion-xl for it")
    assert engine.cache.loads == loads
