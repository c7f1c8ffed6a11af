"""Phrases are read as AUTOMATIC1111 reads them on PICO's routes, and equal Diffusers given the same embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pico.pipelines.prompt_embeds import encode_prompts
from pico.schemas.requests import StableDiffusion2Request, StableDiffusionRequest, StableDiffusionXlRequest

MAX_PIXELS = 2048 * 2048
LONG = ", ".join(f"detail {i}" for i in range(40))  # well over 77 tokens


def request(cls, **body):
    return cls.parse({"Steps": 3, "Seed": 11, **body}, MAX_PIXELS)


def by_hand(tiny_models, model: str, **call):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_models / model, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe, lambda **more: np.asarray(pipe(num_inference_steps=3, width=64, height=64,
                                                generator=[torch.Generator("cpu").manual_seed(11)],
                                                **call, **more).images[0])


@pytest.mark.parametrize("cls, model", [(StableDiffusionRequest, "runwayml/stable-diffusion-v1-5"),
                                        (StableDiffusion2Request, "stabilityai/stable-diffusion-2-1"),
                                        (StableDiffusionXlRequest, "stabilityai/stable-diffusion-xl-base-1.0")],
                         ids=["sd1", "sd2", "sdxl"])
def test_a_weighted_phrase_equals_diffusers_given_the_same_embeddings(engine, tiny_models, cls, model):
    phrase = "a (ginger:1.4) cat, [blurry] BREAK garden"
    ours = np.asarray(engine.generate(request(cls, Phrase=phrase, NegativePhrase="ugly")).images[0])
    pipe, call = by_hand(tiny_models, model)
    if cls is StableDiffusion2Request:  # the SD 2 route's own scheduler, "DPM++ 2M"
        from diffusers import DPMSolverMultistepScheduler

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++",
                                                                 use_karras_sigmas=False)
    embeds = encode_prompts(pipe, phrase, "ugly", steps=3)
    np.testing.assert_array_equal(ours, call(**embeds.kwargs, guidance_scale=cls.__dataclass_fields__[
        "guidance_scale"].default))
    plain = np.asarray(engine.generate(request(cls, Phrase="a ginger cat, blurry garden", NegativePhrase="ugly"))
                       .images[0])
    assert not np.array_equal(ours, plain)


def test_a_literal_phrase_is_diffusers_own_encoding(engine, tiny_models):
    phrase = "a (ginger:1.4) cat"
    ours = engine.generate(request(StableDiffusionRequest, Phrase=phrase, PromptSyntax="literal"))
    _, call = by_hand(tiny_models, "runwayml/stable-diffusion-v1-5", prompt=phrase)
    np.testing.assert_array_equal(np.asarray(ours.images[0]), call(guidance_scale=7.5))


def test_a_plain_phrase_is_diffusers_own_encoding_and_batches(engine, tiny_models):
    ours = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat"))
    _, call = by_hand(tiny_models, "runwayml/stable-diffusion-v1-5", prompt="ginger cat")
    np.testing.assert_array_equal(np.asarray(ours.images[0]), call(guidance_scale=7.5))
    assert engine.batch_key(request(StableDiffusionRequest, Phrase="ginger cat")) is not None


def test_a_long_phrase_is_read_whole_not_cut_at_77_tokens(engine):
    whole = engine.generate(request(StableDiffusionRequest, Phrase=LONG))
    cut = engine.generate(request(StableDiffusionRequest, Phrase=LONG, PromptSyntax="literal"))
    assert not np.array_equal(np.asarray(whole.images[0]), np.asarray(cut.images[0]))
    assert whole.warnings == ["Precision 'half' is not available on the CPU; ran in float32 (Precision 'full')."]
    assert any("77" in note for note in cut.warnings)  # the literal one says what it dropped


def test_long_phrases_batch_only_with_phrases_of_as_many_chunks(engine):
    long_one = request(StableDiffusionRequest, Phrase=LONG)
    engine.generate(long_one)  # the model is loaded: chunks can be counted
    other_long = request(StableDiffusionRequest, Phrase=LONG.replace("detail", "design"), Seed=30)
    short = request(StableDiffusionRequest, Phrase="cat", Seed=40)
    assert engine.batch_key(long_one) == engine.batch_key(other_long) != engine.batch_key(short)
    alone = engine.generate(long_one)
    together, _ = engine.generate_batch([long_one, other_long])
    difference = np.abs(np.asarray(alone.images[0]).astype(int) - np.asarray(together.images[0]).astype(int))
    assert difference.max() <= 2 and np.count_nonzero(difference) <= difference.size // 1000


def test_clip_skip_counts_as_a1111_does(engine, tiny_models):
    skipped = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat", ClipSkip=2))
    last = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat", ClipSkip=1))
    default = engine.generate(request(StableDiffusionRequest, Phrase="ginger cat"))
    np.testing.assert_array_equal(np.asarray(last.images[0]), np.asarray(default.images[0]))
    pipe, call = by_hand(tiny_models, "runwayml/stable-diffusion-v1-5")
    embeds = encode_prompts(pipe, "ginger cat", None, steps=3, clip_skip=1)  # Diffusers counts layers skipped
    np.testing.assert_array_equal(np.asarray(skipped.images[0]), call(**embeds.kwargs, guidance_scale=7.5))
    assert not np.array_equal(np.asarray(skipped.images[0]), np.asarray(default.images[0]))


def test_a_syntax_error_names_the_field(engine):
    from pico.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request(StableDiffusionRequest, Phrase="(" * 300 + "cat"))
    assert caught.value.field == "Phrase"
