"""The warm-model cache under failure: failed loads keep warm models, loads in flight count, memory comes back."""

from __future__ import annotations

import gc
import threading
import traceback
import weakref

import pytest

from pico.config import Settings
from pico.errors import InvalidRequest, ModelUnavailable, OutOfMemory
from pico.pipelines.engine import Engine
from pico.pipelines.loader import ModelCache
from pico.schemas.requests import StableDiffusion2Request, StableDiffusionRequest, StableDiffusionXlRequest
from pico.server.errors import render

MAX_PIXELS = 2048 * 2048
SD1 = "stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)"


def request(cls, **body):
    return cls.parse({"Phrase": "cat", "Steps": 1, **body}, MAX_PIXELS)


def test_a_model_that_fails_to_load_does_not_evict_a_warm_one(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", max_models=1,
                             faults="load:stabilityai/stable-diffusion-2-1"))
    engine.generate(request(StableDiffusionRequest))
    with pytest.raises(ModelUnavailable):
        engine.generate(request(StableDiffusion2Request))
    assert engine.loaded_models() == [SD1]
    assert engine.cache.loads == 1


def test_out_of_memory_while_loading_is_503_and_keeps_the_warm_model(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", max_models=2,
                             faults="loadoom:stabilityai/stable-diffusion-xl-base-1.0"))
    engine.generate(request(StableDiffusionRequest))
    with pytest.raises(OutOfMemory) as caught:
        engine.generate(request(StableDiffusionXlRequest))
    assert caught.value.status == 503 and caught.value.code == "OUT_OF_MEMORY"
    assert "--max-models" in caught.value.hint
    assert engine.loaded_models() == [SD1]  # the failed one is not kept, the warm one is


def test_a_model_that_ran_out_of_memory_loading_is_freed(tiny_models):
    """Nothing keeps the failed model: not the error's frames (which held it), not the collector's frozen set."""
    engine = Engine(Settings(models_dir=tiny_models, device="cpu",
                             faults="loadoom:stabilityai/stable-diffusion-xl-base-1.0"))
    read, held = engine.cache._load, []

    def reading(key):
        pipe = read(key)
        held.extend(weakref.ref(part) for part in (pipe, pipe.unet, pipe.vae, pipe.text_encoder))
        return pipe

    engine.cache._load = reading
    with pytest.raises(OutOfMemory) as caught:
        engine.generate(request(StableDiffusionXlRequest))
    assert caught.value.__cause__ is not None  # the error is still here, with its cause
    assert [part() for part in held] == [None] * 4  # and the model is gone, with no collection of the test's


def test_out_of_memory_while_generating_keeps_none_of_the_call_s_tensors(tiny_models):
    import torch

    engine = Engine(Settings(models_dir=tiny_models, device="cpu", faults="oom:1"))
    with pytest.raises(OutOfMemory) as caught:
        engine.generate(request(StableDiffusionRequest))
    frames = [frame for frame, _ in traceback.walk_tb(caught.value.__cause__.__traceback__)]
    assert len(frames) > 3  # from the runner down into the Diffusers call, where the step failed
    held = [name for frame in frames for name, value in frame.f_locals.items() if isinstance(value, torch.Tensor)]
    assert held == []  # the latents, embeddings and activations are not kept with the error


def test_a_model_load_keeps_no_other_request_s_objects_alive(tiny_models):
    """A large body another request holds while a model loads is freed once that request drops it."""
    class Body:  # in a reference cycle, as parsed requests are: only the garbage collector frees it
        def __init__(self):
            self.data = bytearray(16 << 20)
            self.me = self

    engine = Engine(Settings(models_dir=tiny_models, device="cpu"))
    holding, loaded, bodies = threading.Event(), threading.Event(), []

    def request_in_flight():
        body = Body()
        bodies.append(weakref.ref(body))
        holding.set()
        loaded.wait(60)

    thread = threading.Thread(target=request_in_flight)
    thread.start()
    holding.wait(60)
    engine.generate(request(StableDiffusionRequest))  # loads the model while the body is alive
    loaded.set()
    thread.join(60)
    gc.collect()
    assert bodies[0]() is None


def test_an_engine_hides_the_libraries_from_full_collections_and_a_load_adds_nothing(tiny_models):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu"))
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # torch, Diffusers, Transformers: a full collection walking them takes ~0.3 s
    engine.generate(request(StableDiffusionRequest))
    assert gc.get_freeze_count() <= frozen


def test_loads_in_flight_count_against_max_models():
    released: list[str] = []
    reading = threading.Barrier(2)

    def read(key: str) -> str:
        if key in ("c", "d"):
            reading.wait(10)  # both loads are in flight together
        return key

    cache = ModelCache(read, max_models=2, release=released.append)
    for key in ("a", "b"):
        with cache.use(key):
            pass
    threads = [threading.Thread(target=lambda key=key: cache.use(key).__enter__()) for key in ("c", "d")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(released) == ["a", "b"]  # two loads in flight made room for two, not one each
    assert sorted(cache.keys()) == ["c", "d"]


def test_a_vae_id_is_refused_before_any_load(engine):
    for model in ("stabilityai/sd-vae-ft-mse", "stabilityai/sd-vae-ft-ema", "madebyollin/sdxl-vae-fp16-fix"):
        with pytest.raises(InvalidRequest) as caught:
            request(StableDiffusionRequest, Model=model)
        assert caught.value.field == "Model" and "VAE" in caught.value.message
        assert "runwayml/stable-diffusion-v1-5" in caught.value.hint


def test_load_errors_speak_of_the_model_not_the_server_paths(tmp_path):
    models = tmp_path / "secret-server-folder"
    (models / "mine" / "broken").mkdir(parents=True)
    (models / "mine" / "broken" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    engine = Engine(Settings(models_dir=models, device="cpu"))
    with pytest.raises(ModelUnavailable) as caught:
        engine.generate(request(StableDiffusionRequest, Model="mine/broken"))
    error = caught.value
    assert "secret-server-folder" not in error.message + (error.hint or "")
    _, _, quiet = render(error, "pico")
    _, _, loud = render(error, "pico", verbose=True)
    assert "Detail" not in quiet["Error"] and "secret-server-folder" not in str(quiet)
    assert loud["Error"]["Detail"] == error.detail
