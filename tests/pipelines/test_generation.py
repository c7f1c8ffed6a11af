"""Every pipeline generates real images from the tiny models through the library API."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pico.config import Settings
from pico.errors import InvalidRequest, ModelUnavailable, OutOfMemory
from pico.pipelines.engine import Engine
from pico.pipelines.registry import RUNNERS, find_runner
from pico.catalog.samplers import SCHEDULER_NAMES
from pico.schemas.requests import (
    FluxRequest,
    StableDiffusion2Request,
    StableDiffusion3Request,
    StableDiffusionImageToImageRequest,
    StableDiffusionImageVariationRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
    UpscaleRequest,
)

MAX_PIXELS = 2048 * 2048


def request(cls, **body):
    body.setdefault("Steps", 2)
    return cls.parse(body, MAX_PIXELS)


def pixels(generation):
    return [np.asarray(image) for image in generation.images]


@pytest.fixture
def bodies(image_b64, mask_b64):
    """One minimal valid request per pipeline."""
    return {
        "StableDiffusion": (StableDiffusionRequest, {"Phrase": "ginger cat"}),
        "StableDiffusion2": (StableDiffusion2Request, {"Phrase": "ginger cat"}),
        "StableDiffusionXL": (StableDiffusionXlRequest, {"Phrase": "ginger cat"}),
        "StableDiffusionImageToImage": (StableDiffusionImageToImageRequest,
                                        {"Phrase": "ginger cat", "ImageBase64": image_b64}),
        "StableDiffusionImageVariation": (StableDiffusionImageVariationRequest, {"ImageBase64": image_b64}),
        "StableDiffusionInpaint": (StableDiffusionInpaintRequest,
                                   {"Phrase": "ginger cat", "ImageBase64": image_b64, "MaskImageBase64": mask_b64}),
        "StableDiffusion3": (StableDiffusion3Request, {"Phrase": "ginger cat", "Width": 64, "Height": 64}),
        "Flux": (FluxRequest, {"Phrase": "ginger cat", "Width": 64, "Height": 64}),
        "Upscale": (UpscaleRequest, {"ImageBase64": image_b64, "Upscaler": "SD x4", "Scale": 1}),
    }


@pytest.mark.parametrize("name", [r.name for r in RUNNERS])
def test_each_pipeline_makes_the_images_asked_for(engine, bodies, name):
    cls, body = bodies[name]
    generation = engine.generate(request(cls, Total=2, Seed=41, **body))
    assert generation.name == name
    assert [image.size for image in generation.images] == [(64, 64), (64, 64)]
    assert [m["Seed"] for m in generation.metadata] == [41, 42]
    assert [m["Index"] for m in generation.metadata] == [0, 1]
    assert all(m["Quality"] == 2 and m["Precision"] == "full" for m in generation.metadata)
    precision = "bfloat16" if cls in (StableDiffusion3Request, FluxRequest) else "half"  # the family's default
    assert generation.warnings == [
        f"Precision '{precision}' is not available on the CPU; ran in float32 (Precision 'full')."]


def test_metadata_of_text_to_image(engine):
    generation = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat", NegativePhrase="dog",
                                         Seed=7, GuidanceScale=6.5, Precision="full"))
    assert generation.metadata == [{
        "Model": "runwayml/stable-diffusion-v1-5", "Phrase": "ginger cat", "NegativePhrase": "dog",
        "GuidanceScale": 6.5, "Quality": 2, "Precision": "full", "Scheduler": "PNDM",
        "Seed": 7, "Index": 0, "Width": 64, "Height": 64,
    }]
    assert generation.warnings == []


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
@pytest.mark.parametrize("cls", [StableDiffusion2Request, StableDiffusionXlRequest])
def test_every_scheduler_runs_on_models_that_ship_another(engine, cls, scheduler):
    # Built from the SD 2 (DDIM) and SDXL (Euler) configs; PNDM once needed 4+ steps there (PRK).
    generation = engine.generate(request(cls, Phrase="cat", Seed=1, Steps=1, Scheduler=scheduler))
    assert [m["Scheduler"] for m in generation.metadata] == [scheduler]


def test_same_seed_same_pixels_other_seed_other_pixels(engine):
    first = pixels(engine.generate(request(StableDiffusionXlRequest, Phrase="cat", Seed=123)))
    again = pixels(engine.generate(request(StableDiffusionXlRequest, Phrase="cat", Seed=123)))
    other = pixels(engine.generate(request(StableDiffusionXlRequest, Phrase="cat", Seed=124)))
    assert np.array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


def test_random_seed_is_returned_and_reproduces(engine):
    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=-1))
    seed = generation.metadata[0]["Seed"]
    assert 0 <= seed < 2**32
    replay = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=seed))
    assert np.array_equal(pixels(generation)[0], pixels(replay)[0])


def test_quality_sets_the_steps_run(engine):
    steps = []
    generation = engine.generate(
        request(StableDiffusion2Request, Phrase="cat", Quality=0.02, Steps=None),
        on_step=lambda done, total: steps.append((done, total)),
    )
    assert generation.metadata[0]["Quality"] == 5
    assert steps == [(i, 5) for i in range(1, 6)]
    assert generation.metadata[0]["Scheduler"] == "DPM++ 2M"


def test_width_height_and_scheduler(engine):
    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat", Width=96, Height=64,
                                         Scheduler="Euler a"))
    assert generation.images[0].size == (96, 64)
    assert generation.metadata[0]["Scheduler"] == "Euler a"


def test_image_to_image_keeps_input_size_and_reports_strength(engine):
    from tests.conftest import b64, png_bytes

    generation = engine.generate(request(StableDiffusionImageToImageRequest, Phrase="cat",
                                         ImageBase64=b64(png_bytes((80, 64))), Strength=0.5, Steps=4))
    assert generation.images[0].size == (80, 64)
    assert generation.metadata[0]["Strength"] == 0.5


def test_vae_swap_for_sd_and_refusal_for_sdxl(engine):
    swapped = engine.generate(request(StableDiffusionRequest, Phrase="cat", VaeType="mse", Seed=1))
    plain = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=1))
    assert not np.array_equal(pixels(swapped)[0], pixels(plain)[0])
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="cat", VaeType="ema",
                                Model="stabilityai/stable-diffusion-xl-base-1.0"))
    assert caught.value.field == "VaeType"


def test_a_long_literal_phrase_is_truncated_and_said(engine):
    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat " * 100, PromptSyntax="literal"))
    note = "Phrase is 302 tokens long; the model reads only the first 77, the rest was ignored."
    assert note in generation.warnings
    assert note in generation.metadata[0]["Warnings"]


def test_attention_slicing_gives_the_same_images(engine):
    sliced = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=5, AttentionSlicing=True))
    plain = engine.generate(request(StableDiffusionRequest, Phrase="cat", Seed=5))
    assert np.abs(pixels(sliced)[0].astype(int) - pixels(plain)[0].astype(int)).max() <= 1


def test_wrong_kind_of_model_is_refused(engine, image_b64, mask_b64):
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="cat", Model="runwayml/stable-diffusion-inpainting"))
    assert caught.value.message == ("Model runwayml/stable-diffusion-inpainting is an inpainting model; "
                                    "stable-diffusion needs a text-to-image model")
    assert caught.value.hint == "Use it with inpaint, or pick another model."
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request(StableDiffusionImageVariationRequest, ImageBase64=image_b64,
                                Model="runwayml/stable-diffusion-v1-5"))
    assert caught.value.message == ("Model runwayml/stable-diffusion-v1-5 is a text-to-image model; "
                                    "image-variation needs an image-variation model")
    variation = "lambdalabs/sd-image-variations-diffusers"
    for cls, body in ((StableDiffusionRequest, {}), (StableDiffusionImageToImageRequest, {"ImageBase64": image_b64}),
                      (StableDiffusionInpaintRequest, {"ImageBase64": image_b64, "MaskImageBase64": mask_b64})):
        with pytest.raises(InvalidRequest) as caught:
            engine.generate(request(cls, Phrase="cat", Model=variation, **body))
        assert caught.value.message.startswith(f"Model {variation} is an image-variation model; ")
        assert caught.value.field == "Model"


def test_warm_request_touches_no_disk(tiny_models, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(tiny_models / "runwayml", folder / "runwayml")
    engine = Engine(Settings(models_dir=folder, device="cpu"))
    engine.generate(request(StableDiffusionRequest, Phrase="cat"))
    assert engine.cache.loads == 1
    shutil.rmtree(folder)  # the weights are gone from disk: a warm request must not notice
    generation = engine.generate(request(StableDiffusionRequest, Phrase="cat"))
    assert len(generation.images) == 1
    assert engine.cache.loads == 1


def test_three_sd1_pipelines_share_one_set_of_weights(tiny_models, image_b64, mask_b64):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu"))
    sd1 = "runwayml/stable-diffusion-v1-5"
    engine.generate(request(StableDiffusionRequest, Phrase="cat"))
    engine.generate(request(StableDiffusionImageToImageRequest, Phrase="cat", ImageBase64=image_b64))
    engine.generate(request(StableDiffusionInpaintRequest, Phrase="cat", ImageBase64=image_b64,
                            MaskImageBase64=mask_b64, Model=sd1))
    assert engine.cache.loads == 1
    assert engine.loaded_models() == ["stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)"]  # alias followed
    base = engine.cache.entries()[0].value.pipeline
    derived = [find_runner(name).derive(base) for name in ("stable-diffusion", "image-to-image", "inpaint")]
    assert [type(p).__name__ for p in derived] == [
        "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"]
    for pipe in derived:
        assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.text_encoder is base.text_encoder


def test_max_models_bounds_what_stays_loaded(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", max_models=1))
    engine.generate(request(StableDiffusionRequest, Phrase="cat"))
    engine.generate(request(StableDiffusion2Request, Phrase="cat"))
    assert engine.loaded_models() == ["stabilityai/stable-diffusion-2-1 (float32)"]


def test_unknown_model_in_offline_mode_is_unavailable(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", allow_any_model=True))
    with pytest.raises(ModelUnavailable) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="cat", Model="nobody/nothing"))
    assert caught.value.field == "Model"
    assert "nobody/nothing" in caught.value.message


def test_injected_faults_are_typed_and_the_engine_recovers(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu",
                             faults="oom:1,load:stabilityai/stable-diffusion-2-1"))
    with pytest.raises(OutOfMemory) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="cat"))
    assert caught.value.status == 503 and "Total" in caught.value.hint
    assert len(engine.generate(request(StableDiffusionRequest, Phrase="cat")).images) == 1
    with pytest.raises(ModelUnavailable) as caught:
        engine.generate(request(StableDiffusion2Request, Phrase="cat"))
    assert caught.value.status == 502
    assert caught.value.message.startswith("Model stabilityai/stable-diffusion-2-1 could not be loaded")


def test_pickled_weights_are_never_loaded(tiny_models, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "models" / "mine" / "pickled"
    shutil.copytree(tiny_models / "runwayml/stable-diffusion-v1-5", folder)
    unet = folder / "unet"
    weights = next(unet.glob("*.safetensors"))
    torch.save(load_file(weights), unet / "diffusion_pytorch_model.bin")  # a pickle, as old repos ship
    weights.unlink()
    engine = Engine(Settings(models_dir=tmp_path / "models", device="cpu"))
    with pytest.raises(ModelUnavailable) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="cat", Model="mine/pickled"))
    assert caught.value.status == 502
    assert caught.value.message.startswith("Model mine/pickled could not be loaded from the models directory")


@pytest.mark.parametrize("negatives", [(None, None, None), ("ugly", "blurry", "dark")])
def test_batched_requests_equal_the_unbatched_ones(engine, negatives):
    bodies = [{"Phrase": "cat", "Seed": 1}, {"Phrase": "dog", "Seed": 5, "Total": 2}, {"Phrase": "bird", "Seed": 9}]
    requests = [request(StableDiffusionRequest, **body, **({"NegativePhrase": n} if n else {}))
                for body, n in zip(bodies, negatives)]
    assert len({engine.batch_key(r) for r in requests}) == 1
    batched = engine.generate_batch(requests)
    alone = [engine.generate(r) for r in requests]
    assert [[m["Seed"] for m in g.metadata] for g in batched] == [[1], [5, 6], [9]]
    assert [g.metadata[0]["Phrase"] for g in batched] == ["cat", "dog", "bird"]
    assert [g.metadata[0]["NegativePhrase"] for g in batched] == list(negatives)
    for together, apart in zip(batched, alone):
        for a, b in zip(pixels(together), pixels(apart)):
            # the same noise per seed; a batched matrix product may round one level apart
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_only_requests_that_agree_share_a_batch_key(engine, image_b64):
    base = engine.batch_key(request(StableDiffusionRequest, Phrase="cat"))
    assert engine.batch_key(request(StableDiffusionRequest, Phrase="dog", Seed=3, Total=2)) == base
    assert engine.batch_key(request(StableDiffusionRequest, Phrase="cat", Steps=3)) != base
    assert engine.batch_key(request(StableDiffusionRequest, Phrase="cat", Scheduler="DDIM")) != base
    assert engine.batch_key(request(StableDiffusionRequest, Phrase="cat", Width=128, Height=64)) != base
    assert engine.batch_key(request(StableDiffusionImageToImageRequest, Phrase="cat", ImageBase64=image_b64)) is None


def test_sdxl_requests_with_and_without_a_negative_phrase_never_share_a_call(engine):
    plain = request(StableDiffusionXlRequest, Phrase="cat", Seed=2)
    negative = request(StableDiffusionXlRequest, Phrase="dog", Seed=3, NegativePhrase="ugly")
    assert engine.batch_key(plain) != engine.batch_key(negative)
    other = request(StableDiffusionXlRequest, Phrase="bird", Seed=4)
    together = engine.generate_batch([plain, other])
    for batched, alone in zip(together, (engine.generate(plain), engine.generate(other))):
        assert np.abs(pixels(batched)[0].astype(int) - pixels(alone)[0].astype(int)).max() <= 1
