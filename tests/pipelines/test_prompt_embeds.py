"""A1111-style prompt embeddings on the tiny real SD 1, SD 2 and SDXL pipelines.

Embeddings are checked against Diffusers' own encode_prompt and against A1111's arithmetic
done by hand here; images against a plain Diffusers call given the same embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pico.pipelines.prompt_embeds import chunk_count, clip_skip_from_a1111, encode_prompts, needs_embeddings

SD1 = "runwayml/stable-diffusion-v1-5"
SD2 = "stabilityai/stable-diffusion-2-1"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
LONG = "a ginger cat, " * 8  # 88 tokens with the tiny byte-level tokenizer


def load(tiny_models, model_id):
    from diffusers import DiffusionPipeline

    from pico.pipelines.device import quiet_libraries

    quiet_libraries()
    pipe = DiffusionPipeline.from_pretrained(tiny_models / model_id, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    # A fresh final layer norm is the identity, so each token's output has mean 0 and A1111's mean
    # restoration would divide rounding noise by rounding noise; a trained CLIP's norm has a bias.
    generator = torch.Generator().manual_seed(0)
    for encoder in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if encoder is not None:
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            norm.bias.data = torch.randn(norm.bias.shape, generator=generator) * 0.5
    return pipe


@pytest.fixture(scope="module")
def sd1(tiny_models):
    return load(tiny_models, SD1)


@pytest.fixture(scope="module")
def sd2(tiny_models):
    return load(tiny_models, SD2)


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    return load(tiny_models, SDXL)


def diffusers_embeds(pipe, prompt, negative, clip_skip=None):
    with torch.no_grad():
        return pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                                  negative_prompt=negative, clip_skip=clip_skip)


def image(pipe, seed=7, steps=2, **kwargs):
    generator = torch.Generator("cpu").manual_seed(seed)
    return np.asarray(pipe(num_inference_steps=steps, generator=generator, output_type="np", **kwargs).images)


def chunk_ids(tokenizer, fragments):
    """A1111's 77-token chunk for short text, built by hand: BOS, each fragment's tokens, EOS, padding."""
    ids, weights = [tokenizer.bos_token_id], [1.0]
    for text, weight in fragments:
        tokens = tokenizer(text, add_special_tokens=False).input_ids
        ids += tokens
        weights += [weight] * len(tokens)
    ids += [tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (76 - len(ids))
    return torch.tensor([ids]), torch.tensor(weights + [1.0] * (77 - len(weights)))


def weighted(z, weights):
    """A1111's emphasis by hand: multiply, then rescale to the mean before multiplying."""
    scaled = z * weights[None, :, None]
    return scaled * (z.mean() / scaled.mean())


# --- plain prompts are Diffusers' own embeddings -------------------------------------------------

@pytest.mark.parametrize("model_id", [SD1, SD2])
def test_a_plain_prompt_is_bit_identical_to_diffusers_on_sd(tiny_models, model_id, request):
    pipe = request.getfixturevalue({SD1: "sd1", SD2: "sd2"}[model_id])
    ours = encode_prompts(pipe, "a ginger cat", "blurry", steps=2)
    positive, negative = diffusers_embeds(pipe, "a ginger cat", "blurry")
    assert torch.equal(ours.kwargs["prompt_embeds"], positive)
    assert torch.equal(ours.kwargs["negative_prompt_embeds"], negative)
    assert ours.warnings == [] and not ours.changes_during_sampling


def test_a_plain_prompt_is_bit_identical_to_diffusers_on_sdxl(sdxl):
    for negative in ("blurry", None):  # None: Diffusers' zeros for a missing negative prompt
        ours = encode_prompts(sdxl, "a ginger cat", negative, steps=2)
        theirs = diffusers_embeds(sdxl, "a ginger cat", negative)
        names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        assert all(torch.equal(ours.kwargs[name], tensor) for name, tensor in zip(names, theirs))
    assert not torch.any(ours.kwargs["negative_prompt_embeds"])


def test_images_from_plain_embeddings_equal_the_plain_pipeline_call(sd1, sdxl):
    for pipe in (sd1, sdxl):
        ours = encode_prompts(pipe, "a ginger cat", "blurry", steps=2, num_images=2)
        made = image(pipe, **ours.kwargs, num_images_per_prompt=2)
        plain = image(pipe, prompt="a ginger cat", negative_prompt="blurry", num_images_per_prompt=2)
        assert np.array_equal(made, plain)


# --- weights --------------------------------------------------------------------------------------

def test_a_weighted_word_scales_its_hidden_states_then_the_mean_is_restored(sd1):
    ours = encode_prompts(sd1, "a (ginger:1.5) cat", None, steps=2).kwargs["prompt_embeds"]
    ids, weights = chunk_ids(sd1.tokenizer, [("a ", 1.0), ("ginger", 1.5), (" cat", 1.0)])
    with torch.no_grad():
        z = sd1.text_encoder(ids)[0]
    assert torch.equal(ours, weighted(z, weights))
    factor = z.mean() / (z * weights[None, :, None]).mean()  # the mean restoration's single scale factor
    ginger = weights == 1.5
    assert ginger.sum() == 6  # g i n g e r</w>
    torch.testing.assert_close(ours[0, ginger], z[0, ginger] * 1.5 * factor, rtol=1e-6, atol=0)
    torch.testing.assert_close(ours[0, ~ginger], z[0, ~ginger] * factor, rtol=1e-6, atol=0)
    torch.testing.assert_close(ours.mean(), z.mean(), rtol=1e-5, atol=0)
    assert not torch.equal(ours, encode_prompts(sd1, "a ginger cat", None, steps=2).kwargs["prompt_embeds"])


def test_sdxl_weights_each_encoder_and_pools_from_the_second(sdxl):
    ours = encode_prompts(sdxl, "a [ginger] cat", "(blurry)", steps=2)
    by_hand = []
    for text, fragments in (("positive", [("a ", 1.0), ("ginger", 1 / 1.1), (" cat", 1.0)]),
                            ("negative", [("blurry", 1.1)])):
        parts, pooled = [], None
        for tokenizer, encoder in ((sdxl.tokenizer, sdxl.text_encoder), (sdxl.tokenizer_2, sdxl.text_encoder_2)):
            ids, weights = chunk_ids(tokenizer, fragments)
            with torch.no_grad():
                out = encoder(ids, output_hidden_states=True)
            parts.append(weighted(out.hidden_states[-2], weights))
            pooled = out[0] if out[0].ndim == 2 else pooled
        by_hand.append((torch.cat(parts, dim=-1), pooled))
    (positive, pooled), (negative, negative_pooled) = by_hand
    assert torch.equal(ours.kwargs["prompt_embeds"], positive)
    assert torch.equal(ours.kwargs["pooled_prompt_embeds"], pooled)
    assert torch.equal(ours.kwargs["negative_prompt_embeds"], negative)
    assert torch.equal(ours.kwargs["negative_pooled_prompt_embeds"], negative_pooled)
    made = image(sdxl, **ours.kwargs)
    by_hand_image = image(sdxl, prompt_embeds=positive, negative_prompt_embeds=negative,
                          pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
    assert np.array_equal(made, by_hand_image)


def test_images_from_weighted_embeddings_equal_diffusers_given_them_by_hand(sd1):
    ours = encode_prompts(sd1, "a (ginger:1.5) cat", "[blurry]", steps=2)
    ids, weights = chunk_ids(sd1.tokenizer, [("a ", 1.0), ("ginger", 1.5), (" cat", 1.0)])
    negative_ids, negative_weights = chunk_ids(sd1.tokenizer, [("blurry", 1 / 1.1)])
    with torch.no_grad():
        positive = weighted(sd1.text_encoder(ids)[0], weights)
        negative = weighted(sd1.text_encoder(negative_ids)[0], negative_weights)
    made = image(sd1, **ours.kwargs, num_images_per_prompt=2)
    assert np.array_equal(made, image(sd1, prompt_embeds=positive, negative_prompt_embeds=negative,
                                      num_images_per_prompt=2))
    assert not np.array_equal(made, image(sd1, prompt="a ginger cat", negative_prompt="blurry",
                                          num_images_per_prompt=2))


# --- long prompts and BREAK -------------------------------------------------------------------------

def test_a_prompt_longer_than_77_tokens_is_encoded_in_two_chunks_and_changes_the_image(sd1, sdxl):
    for pipe in (sd1, sdxl):
        ours = encode_prompts(pipe, LONG, "blurry", steps=2)
        assert ours.kwargs["prompt_embeds"].shape[1] == 154
        assert ours.kwargs["negative_prompt_embeds"].shape[1] == 154  # padded with an empty chunk
        truncated = image(pipe, prompt=LONG, negative_prompt="blurry")
        assert not np.array_equal(image(pipe, **ours.kwargs), truncated)
    # the first chunk ends at the last comma within 20 tokens of the 75th: A1111's word wrap
    tokens = sd1.tokenizer(LONG, add_special_tokens=False).input_ids
    comma = sd1.tokenizer.convert_tokens_to_ids(",</w>")
    last_comma = max(i for i, t in enumerate(tokens[:75]) if t == comma)
    ids, _ = chunk_ids(sd1.tokenizer, [(sd1.tokenizer.decode(tokens[:last_comma + 1]), 1.0)])
    with torch.no_grad():
        first_chunk = sd1.text_encoder(ids)[0]
    assert torch.equal(encode_prompts(sd1, LONG, None, steps=2).kwargs["prompt_embeds"][:, :77], first_chunk)
    assert needs_embeddings(sd1, [LONG], [None]) and chunk_count(sd1, LONG, None, 2) == 2


def test_break_starts_a_new_chunk(sd1):
    ours = encode_prompts(sd1, "a ginger cat BREAK a hat", None, steps=2).kwargs["prompt_embeds"]
    assert ours.shape[1] == 154
    first, _ = diffusers_embeds(sd1, "a ginger cat", None)
    second, _ = diffusers_embeds(sd1, "a hat", None)
    assert torch.equal(ours, torch.cat([first, second], dim=1))


def test_batched_prompts_are_padded_alike_and_each_keeps_its_own_encoding(sd1):
    ours = encode_prompts(sd1, ["a ginger cat", LONG], ["blurry", None], steps=2)
    alone = encode_prompts(sd1, "a ginger cat", "blurry", steps=2).kwargs
    empty, _ = diffusers_embeds(sd1, "", None)
    assert ours.kwargs["prompt_embeds"].shape == (2, 154, 32)
    assert torch.equal(ours.kwargs["prompt_embeds"][0], torch.cat([alone["prompt_embeds"], empty], dim=1)[0])
    assert torch.equal(ours.kwargs["prompt_embeds"][1], encode_prompts(sd1, LONG, None, steps=2)
                       .kwargs["prompt_embeds"][0])
    assert torch.equal(ours.kwargs["negative_prompt_embeds"][1], torch.cat([empty, empty], dim=1)[0])


# --- clip skip --------------------------------------------------------------------------------------

def test_clip_skip_2_in_a1111_is_diffusers_clip_skip_1_on_sd1(sd1):
    skip = clip_skip_from_a1111(2, "sd1")
    assert skip == 1 and clip_skip_from_a1111(1, "sd1") is None
    ours = encode_prompts(sd1, "a ginger cat", "blurry", steps=2, clip_skip=skip)
    ids, _ = chunk_ids(sd1.tokenizer, [("a ginger cat", 1.0)])
    with torch.no_grad():
        hidden = sd1.text_encoder(ids, output_hidden_states=True).hidden_states
    # A1111: hidden_states[-CLIP_stop_at_last_layers] then the final layer norm; Diffusers' encode_prompt:
    # hidden_states[-(clip_skip + 1)] then the same norm
    assert torch.equal(ours.kwargs["prompt_embeds"], sd1.text_encoder.final_layer_norm(hidden[-2]))
    assert not torch.equal(ours.kwargs["prompt_embeds"], diffusers_embeds(sd1, "a ginger cat", "blurry")[0])
    assert torch.equal(ours.kwargs["negative_prompt_embeds"],
                       encode_prompts(sd1, "blurry", None, steps=2, clip_skip=1).kwargs["prompt_embeds"])


def test_clip_skip_on_sdxl_counts_from_the_penultimate_layer_as_diffusers_does(sdxl):
    assert clip_skip_from_a1111(2, "sdxl") is None and clip_skip_from_a1111(3, "sd2") is None
    ours = encode_prompts(sdxl, "a ginger cat", "blurry", steps=2, clip_skip=1)
    theirs = diffusers_embeds(sdxl, "a ginger cat", "blurry", clip_skip=1)
    assert torch.equal(ours.kwargs["prompt_embeds"], theirs[0])
    assert torch.equal(ours.kwargs["pooled_prompt_embeds"], theirs[2])


# --- prompt editing and alternation -------------------------------------------------------------------

def record_unet_inputs(pipe):
    seen = []

    def hook(_module, args, kwargs):
        added = kwargs.get("added_cond_kwargs") or {}
        seen.append((kwargs["encoder_hidden_states"].clone(), added.get("text_embeds")))

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def which(rows, candidates):
    """The name of the candidate embedding every row equals (to float rounding: a batch of two encodes
    in other rounding than a batch of one), after checking the candidates are far apart."""
    names = list(candidates)
    for a in names:
        for b in names:
            assert a == b or not torch.allclose(candidates[a], candidates[b], atol=1e-3)
    found = {name for row in rows for name in names if torch.allclose(row, candidates[name][0], atol=1e-5, rtol=1e-5)}
    assert len(found) == 1, found
    return found.pop()


@pytest.mark.parametrize("pipe_name", ["sd1", "sdxl"])
def test_prompt_editing_switches_the_conditioning_at_a1111s_step(pipe_name, request):
    pipe = request.getfixturevalue(pipe_name)
    ours = encode_prompts(pipe, "a [cat:dog:2]", "[blurry::1]", steps=4, num_images=2)
    assert ours.changes_during_sampling
    steps_seen = []
    callback = ours.step_callback(pipe, inner=lambda p, i, t, tensors: steps_seen.append(i) or tensors)
    seen, handle = record_unet_inputs(pipe)
    try:
        image(pipe, steps=4, **ours.kwargs, num_images_per_prompt=2, **callback)
    finally:
        handle.remove()
    embeds = {text: encode_prompts(pipe, text, None, steps=4).kwargs for text in ("a cat", "a dog", "blurry", "")}
    hidden = {text: kwargs["prompt_embeds"] for text, kwargs in embeds.items()}
    positives = [which(h[2:], {k: hidden[k] for k in ("a cat", "a dog")}) for h, _ in seen]
    negatives = [which(h[:2], {k: hidden[k] for k in ("blurry", "")}) for h, _ in seen]
    # A1111: step s (from 0) takes the first entry whose end >= s; "from" ends at 2, the negative's at 1.
    # SD 1's PNDM calls the UNet once more than its steps (its first step is a warm-up); Euler once a step.
    calls = {"sd1": 5, "sdxl": 4}[pipe_name]
    assert steps_seen == list(range(calls))
    assert positives == ["a cat", "a cat", "a cat", "a dog", "a dog"][:calls]
    assert negatives == ["blurry", "blurry", "", "", ""][:calls]
    if pipe_name == "sdxl":
        pooled = {text: kwargs["pooled_prompt_embeds"] for text, kwargs in embeds.items()}
        assert [which(p[2:], {k: pooled[k] for k in ("a cat", "a dog")}) for _, p in seen] == positives
        assert [which(p[:2], {k: pooled[k] for k in ("blurry", "")}) for _, p in seen] == negatives


def test_alternation_changes_every_step_and_the_image(sd1):
    ours = encode_prompts(sd1, "a [cat|dog]", None, steps=4)
    seen, handle = record_unet_inputs(sd1)
    try:
        alternated = image(sd1, steps=4, **ours.kwargs, **ours.step_callback(sd1))
    finally:
        handle.remove()
    candidates = {text: encode_prompts(sd1, text, None, steps=4).kwargs["prompt_embeds"] for text in ("a cat", "a dog")}
    # ends 1, 2, 3, 4: steps 0 and 1 take the first entry, then one a step (PNDM's fifth call included)
    assert [which(hidden[1:], candidates) for hidden, _ in seen] == ["a cat", "a cat", "a dog", "a cat", "a dog"]
    assert not np.array_equal(alternated, image(sd1, steps=4, **ours.kwargs))


def test_editing_is_named_in_a_warning_where_a_pipeline_cannot_switch_prompts(tiny_models):
    pipe = load(tiny_models, SD1)
    pipe._callback_tensor_inputs = ["latents"]  # as a pipeline whose step callback cannot replace embeddings
    ours = encode_prompts(pipe, "a [cat:dog:2]", None, steps=4)
    assert ours.step_callback(pipe) == {}
    assert ours.warnings == [("Prompt editing and alternation ([from:to:when], [a|b]) were not applied: "
                              "StableDiffusionPipeline cannot switch prompts during sampling; the first step's "
                              "prompt was used throughout.")]


def test_unsupported_syntax_is_named_and_the_guidance_weight_returned(sd1):
    ours = encode_prompts(sd1, ["a cat AND a dog", "a cat"], None, steps=2)
    assert ours.warnings == ["AND (composable diffusion) is not supported: the sub-prompts were encoded as one prompt."]
    weighted_guidance = encode_prompts(sd1, "a cat:1.5 <lora:film:0.5>", None, steps=2)
    assert weighted_guidance.guidance_scale(7.0) == 10.5
    assert weighted_guidance.loras == [[("film", 0.5, 0.5)]]
    assert torch.equal(weighted_guidance.kwargs["prompt_embeds"], diffusers_embeds(sd1, "a cat", None)[0])


def test_a_syntax_error_is_a_422_naming_the_field(sd1):
    from pico.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="1.2.3") as caught:
        encode_prompts(sd1, "a cat", "a (dog:1.2.3)", steps=2)
    assert (caught.value.status, caught.value.field) == (422, "NegativePhrase")


def test_needs_embeddings_only_for_syntax_long_prompts_or_sd_clip_skip(sd1, sdxl):
    assert not needs_embeddings(sd1, ["a ginger cat, sitting"], ["blurry"])
    assert needs_embeddings(sd1, ["a ginger cat"], [None], clip_skip=1)  # Diffusers' own fails on SD 1/2
    assert not needs_embeddings(sdxl, ["a ginger cat"], [None], clip_skip=1)
    assert needs_embeddings(sd1, ["a (ginger) cat"], [None])
    assert needs_embeddings(sd1, ["a ginger cat"], ["[blurry]"])
    assert chunk_count(sd1, "a cat", "x BREAK y", 2) == 2


def test_batched_requests_get_one_row_per_image_and_their_own_edits(sd1):
    ours = encode_prompts(sd1, ["a cat", "a [cat:dog:1]"], [None, "blurry"], steps=3, num_images=[2, 1])
    assert ours.kwargs["prompt_embeds"].shape[0] == ours.kwargs["negative_prompt_embeds"].shape[0] == 3
    seen, handle = record_unet_inputs(sd1)
    try:
        generator = [torch.Generator().manual_seed(seed) for seed in (1, 2, 3)]
        sd1(num_inference_steps=3, generator=generator, output_type="np", num_images_per_prompt=1, **ours.kwargs,
            **ours.step_callback(sd1))
    finally:
        handle.remove()
    texts = ("a cat", "a dog", "blurry", "")
    embeds = {text: encode_prompts(sd1, text, None, steps=3).kwargs["prompt_embeds"] for text in texts}
    positives = {k: embeds[k] for k in ("a cat", "a dog")}
    negatives = {k: embeds[k] for k in ("blurry", "")}
    # rows: [negative x 3 images; positive x 3 images]; the third image is the edited request's
    assert [[which(h[3 + row:4 + row], positives) for row in range(3)] for h, _ in seen] == [
        ["a cat", "a cat", "a cat"], ["a cat", "a cat", "a cat"], ["a cat", "a cat", "a dog"],
        ["a cat", "a cat", "a dog"]]
    assert all([which(h[row:row + 1], negatives) for row in range(3)] == ["", "", "blurry"] for h, _ in seen)
