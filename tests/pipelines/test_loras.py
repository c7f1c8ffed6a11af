"""LoRAs through the engine: what Diffusers' own load_lora_weights + set_adapters draws, and a base that never changes.

The standard of proof is a plain Diffusers pipeline loaded by hand from the same tiny folder, given
the same LoRA file and weights. Adapters live on shared modules, so concurrent requests with
different LoRA sets are run here on real threads and must each equal their result run alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pico.catalog.models import SD1_MODEL
from pico.config import Settings
from pico.errors import InvalidRequest, ModelUnavailable
from pico.schemas.requests import StableDiffusionImageToImageRequest, StableDiffusionRequest

PIXELS = 2048 * 2048
STEPS, SEED = 3, 7



@pytest.fixture(scope="module")
def loras(tiny_models, tmp_path_factory) -> Path:
    """More LoRA files for the tiny SD 1.5: one with text-encoder layers, one damaged, one matching no layer."""
    from safetensors.torch import load_file, save_file

    from pico.pipelines.tiny_loras import write_tiny_lora

    folder = tmp_path_factory.mktemp("more-loras")
    write_tiny_lora(tiny_models / SD1_MODEL, folder / "with-te.safetensors", seed=3, text_encoder=True)
    weights = load_file(tiny_models / "loras" / "style" / "pixel-art.safetensors")
    up = next(key for key in weights if key.endswith("lora_up.weight"))
    weights[up] = torch.zeros(weights[up].shape[0] + 3, weights[up].shape[1])  # an up matrix of the wrong height
    save_file(weights, str(folder / "damaged.safetensors"), metadata={"ss_base_model_version": "sd_v1"})
    save_file({"unet.nowhere.lora_A.weight": torch.ones(4, 8), "unet.nowhere.lora_B.weight": torch.ones(8, 4)},
              str(folder / "elsewhere.safetensors"))
    return folder


def make_engine(tiny_models: Path, loras: Path, cache: Path, **settings):
    from pico.pipelines.engine import Engine

    return Engine(Settings(models_dir=tiny_models, lora_dir=(loras,), device="cpu", cache_dir=cache, **settings))


@pytest.fixture(scope="module")
def engine(tiny_models, loras, tmp_path_factory):
    return make_engine(tiny_models, loras, tmp_path_factory.mktemp("cache"))


def parse(cls=StableDiffusionRequest, **body):
    return cls.parse({"Phrase": "ginger cat", "Steps": STEPS, "Seed": SEED, "Width": 64, "Height": 64, **body},
                     PIXELS)


def image(generation) -> np.ndarray:
    return np.asarray(generation.images[0])


def by_hand(tiny_models: Path, adapters: list[tuple[Path, object]]) -> np.ndarray:
    """The tiny SD 1.5 folder in plain Diffusers with ``adapters`` (file, weight) loaded and set."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models / SD1_MODEL, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    for number, (file, _) in enumerate(adapters):
        pipe.load_lora_weights(str(file), adapter_name=f"lora{number}")
    pipe.set_adapters([f"lora{n}" for n in range(len(adapters))], [weight for _, weight in adapters])
    out = pipe(prompt="ginger cat", num_inference_steps=STEPS, guidance_scale=7.5, width=64, height=64,
               num_images_per_prompt=1, generator=[torch.Generator("cpu").manual_seed(SEED)]).images
    return np.asarray(out[0])


@pytest.mark.parametrize("name, file", [("add-detail", "loras/add-detail.safetensors"),
                                        ("pixel-art", "loras/style/pixel-art.safetensors")],
                         ids=["diffusers-format", "kohya-format"])
def test_a_lora_draws_what_diffusers_draws_with_it_and_the_base_stays_as_it_was(engine, tiny_models, name, file):
    base = image(engine.generate(parse()))
    half = engine.generate(parse(Loras=[{"Name": name, "Weight": 0.5}]))
    full = image(engine.generate(parse(Loras=[{"Name": name}])))
    assert not np.array_equal(image(half), base) and not np.array_equal(image(half), full)
    np.testing.assert_array_equal(image(half), by_hand(tiny_models, [(tiny_models / file, 0.5)]))
    np.testing.assert_array_equal(full, by_hand(tiny_models, [(tiny_models / file, 1.0)]))
    np.testing.assert_array_equal(image(engine.generate(parse())), base)  # bit-identical base afterwards
    np.testing.assert_array_equal(image(engine.generate(parse(Loras=[{"Name": name, "Weight": 0}]))), base)
    record = half.metadata[0]["Loras"]
    assert [(r["Name"], r["Weight"]) for r in record] == [(file.removeprefix("loras/"), 0.5)]
    assert len(record[0]["Hash"]) == 12


def test_several_loras_and_a1111s_separate_text_encoder_weight(engine, tiny_models, loras):
    both = engine.generate(parse(Loras=[{"Name": "add-detail", "Weight": 0.7}, {"Name": "pixel-art", "Weight": -0.4}]))
    np.testing.assert_array_equal(image(both), by_hand(tiny_models, [
        (tiny_models / "loras" / "add-detail.safetensors", 0.7),
        (tiny_models / "loras" / "style" / "pixel-art.safetensors", -0.4)]))
    split = engine.generate(parse(Loras=[{"Name": "with-te", "Weight": 0.25, "UnetWeight": 1.0}]))
    np.testing.assert_array_equal(image(split), by_hand(tiny_models, [
        (loras / "with-te.safetensors", {"unet": 1.0, "text_encoder": 0.25})]))
    assert not np.array_equal(image(split), image(engine.generate(parse(Loras=[{"Name": "with-te"}]))))
    assert split.metadata[0]["Loras"][0]["UnetWeight"] == 1.0


def test_a_tag_in_the_phrase_is_the_same_lora_as_the_field(engine):
    tagged = engine.generate(parse(Phrase="ginger cat <lora:add-detail:0.6>", Steps=STEPS))
    assert tagged.metadata[0]["Phrase"] == "ginger cat <lora:add-detail:0.6>"  # recorded as written, as A1111 does
    assert tagged.metadata[0]["Loras"][0]["Weight"] == 0.6
    fielded = engine.generate(parse(Loras=[{"Name": "add-detail", "Weight": 0.6}]))
    np.testing.assert_array_equal(image(tagged), image(fielded))


def test_concurrent_requests_with_different_loras_each_draw_what_they_draw_alone(engine, image_b64):
    cases = {
        "none": parse(Steps=8),
        "detail": parse(Steps=8, Loras=[{"Name": "add-detail", "Weight": 0.8}]),
        "pixel": parse(Steps=8, Loras=[{"Name": "pixel-art", "Weight": 1.2}]),
        "both": parse(StableDiffusionImageToImageRequest, Steps=8, ImageBase64=image_b64,
                      Loras=[{"Name": "add-detail"}, {"Name": "pixel-art", "Weight": 0.3}]),
    }
    alone = {name: image(engine.generate(request)) for name, request in cases.items()}
    start = threading.Barrier(len(cases) * 2)
    results: dict[str, list[np.ndarray]] = {name: [] for name in cases}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            start.wait(30)
            results[name].append(image(engine.generate(cases[name])))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in cases for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for name, images in results.items():
        assert len(images) == 2
        for got in images:
            np.testing.assert_array_equal(got, alone[name], err_msg=name)


def test_concurrent_calls_on_one_model_each_have_their_own_tokenizer(engine, image_b64):
    """Fast tokenizers keep their padding mode between calls: shared, two calls at once padded each other's
    prompts (wrong pixels, or "Expected size 2 but got size 77"). Each derived pipeline has its own now."""
    cases = [parse(Steps=8), parse(StableDiffusionImageToImageRequest, Steps=8, ImageBase64=image_b64)]
    alone = [image(engine.generate(request)) for request in cases]
    for _ in range(3):
        start, results, errors = threading.Barrier(6), {}, []

        def run(number: int) -> None:
            try:
                start.wait(30)
                results[number] = image(engine.generate(cases[number % 2]))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(number,)) for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        for number, got in results.items():
            np.testing.assert_array_equal(got, alone[number % 2])


def test_loras_beyond_max_loras_are_unloaded_and_load_again_the_same(tiny_models, loras, tmp_path):
    small = make_engine(tiny_models, loras, tmp_path, max_loras=1)
    first = image(small.generate(parse(Loras=[{"Name": "add-detail"}])))
    small.generate(parse(Loras=[{"Name": "pixel-art"}]))
    again = image(small.generate(parse(Loras=[{"Name": "add-detail"}])))
    np.testing.assert_array_equal(first, again)
    model = next(entry.value for entry in small.cache.entries())
    assert model.loras.loads == 3 and len(model.loras.loaded) == 1
    assert len({name for names in model.pipeline.get_list_adapters().values() for name in names}) == 1
    both = small.generate(parse(Loras=[{"Name": "add-detail"}, {"Name": "pixel-art"}]))  # a set over the bound
    assert len(model.loras.loaded) == 2 and both.images


def test_a_damaged_lora_is_a_422_naming_it_and_leaves_no_adapter_behind(engine, tiny_models):
    base = image(engine.generate(parse()))
    with pytest.raises(ModelUnavailable) as damaged:
        engine.generate(parse(Loras=[{"Name": "add-detail"}, {"Name": "damaged"}]))
    assert (damaged.value.status, damaged.value.field) == (422, "Loras[1].Name")
    assert damaged.value.message == ("LoRA damaged.safetensors could not be applied to this model: its weights do "
                                     "not fit the model's layers")
    with pytest.raises(ModelUnavailable) as elsewhere:
        engine.generate(parse(Phrase="cat <lora:elsewhere:1>"))
    assert (elsewhere.value.status, elsewhere.value.field) == (422, "Phrase")
    model = next(e.value for e in engine.cache.entries() if e.key.model_id == "stable-diffusion-v1-5/stable-diffusion-v1-5")
    present = {name for names in model.pipeline.get_list_adapters().values() for name in names}
    assert present == set(model.loras.loaded.values())  # nothing of the failed files
    np.testing.assert_array_equal(image(engine.generate(parse())), base)
    np.testing.assert_array_equal(image(engine.generate(parse(Loras=[{"Name": "add-detail", "Weight": 0.5}]))),
                                  by_hand(tiny_models, [(tiny_models / "loras" / "add-detail.safetensors", 0.5)]))


def test_a_lora_for_another_family_is_refused_before_anything_loads(engine, tiny_models, tmp_path):
    from pico.pipelines.tiny_loras import write_tiny_lora

    write_tiny_lora(tiny_models / "stabilityai/stable-diffusion-xl-base-1.0", tmp_path / "xl.safetensors",
                    format="kohya")
    own = make_engine(tiny_models, tmp_path, tmp_path / "cache")
    with pytest.raises(InvalidRequest) as caught:
        own.generate(parse(Loras=[{"Name": "xl"}]))
    assert caught.value.field == "Loras[0].Name"
    assert caught.value.message == "LoRA xl.safetensors is for SDXL models; the model is SD 1.x"
    assert own.cache.loads == 0


def test_with_a_compiled_unet_new_loras_and_weights_swap_in_without_recompiling(tiny_models):
    """PEFT's compiled hot-swap (--compile): slots stay, a new LoRA replaces an unused slot's weights in place."""
    from diffusers import StableDiffusionPipeline
    from torch._dynamo.utils import counters

    from pico.catalog.files import ModelFiles
    from pico.catalog.resolver import LoraChoice
    from pico.pipelines.loras import HotSwapLoraAdapters, LoraAdapters

    files = ModelFiles.for_models_dir(tiny_models)

    def choice(name: str, weight: float) -> tuple:
        return LoraChoice(files.find_lora(name), weight, weight)

    def pipe():
        loaded = StableDiffusionPipeline.from_pretrained(tiny_models / SD1_MODEL, use_safetensors=True)
        loaded.set_progress_bar_config(disable=True)
        return loaded

    def draw(p) -> np.ndarray:
        return np.asarray(p("cat", num_inference_steps=2, width=64, height=64,
                            generator=torch.Generator("cpu").manual_seed(SEED)).images[0])

    plain, hot = pipe(), pipe()
    reference, swapping = LoraAdapters(plain, 8), HotSwapLoraAdapters(hot, 8, target_rank=16)
    base = draw(hot)
    torch._dynamo.reset()
    hot.unet.compile(backend="eager")  # what --compile does, with a backend that compiles in a moment on a CPU
    draw(hot)
    graphs = [counters["stats"]["unique_graphs"]]
    sets = [(choice("add-detail", 1.0),), (choice("add-detail", 0.5),), (choice("pixel-art", 0.7),), (),
            (choice("add-detail", 0.3), choice("pixel-art", 1.0)), (choice("pixel-art", -0.2),)]
    for loras in sets:
        swapping.activate(loras)
        reference.activate(loras)
        np.testing.assert_array_equal(got := draw(hot), draw(plain))
        if not loras:
            np.testing.assert_array_equal(got, base)
        graphs.append(counters["stats"]["unique_graphs"])
    # compiled again only for the first slot and for the second (the first set of two LoRAs): never for a swap
    assert [b - a for a, b in zip(graphs, graphs[1:])] == [1, 0, 0, 0, 1, 0]
    assert swapping.slots == ["pico_slot0", "pico_slot1"] and swapping.loads == 3  # detail, pixel swapped in, detail again
