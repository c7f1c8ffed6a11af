"""Prompt embeddings as AUTOMATIC1111 builds them, for Diffusers' SD 1, SD 2 and SDXL pipelines.

A1111 (``modules/sd_hijack_clip.py``, emphasis "Original") encodes a prompt in chunks of 75
tokens, each wrapped in BOS/EOS and padded to 77, a ``BREAK`` closing a chunk early and a
chunk that fills up moving back to its last comma (within 20 tokens). The chunks' hidden
states are concatenated along the sequence, each token's hidden state is multiplied by its
weight, and the whole batch is rescaled to its mean before weighting. SDXL does this for
each of its two encoders, concatenates them along the channels, and takes the pooled
embedding from the second encoder's first chunk.

Clip skip follows Diffusers' ``clip_skip`` (layers skipped): on SD 1/2 the hidden state
``-(clip_skip + 1)`` then the final layer norm; on SDXL ``-(clip_skip + 2)``, no norm, on
both encoders. :func:`clip_skip_from_a1111` maps A1111's ``CLIP_stop_at_last_layers``.

Everything here returns keyword arguments for the pipeline call; prompt editing and
alternation come with :meth:`PromptEmbeddings.step_callback`, which swaps the embeddings the
pipeline concatenated for classifier-free guidance at the steps where the prompt changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pico.pipelines.device import is_sdxl
from pico.prompt_syntax import (
    PromptPlan,
    TOKENS_PER_CHUNK,
    PromptSyntaxError,
    is_break,
    parse_attention,
    plan_prompt,
    schedule_index,
    uses_syntax,
)

if TYPE_CHECKING:
    import torch

CHUNK = TOKENS_PER_CHUNK
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default


def clip_skip_from_a1111(stop_at_last_layers: int, family: Literal["sd1", "sd2", "sdxl"]) -> int | None:
    """Diffusers' ``clip_skip`` for A1111's ``CLIP_stop_at_last_layers`` (1 = last layer).

    SD 1: A1111 takes hidden state ``-n`` and the final layer norm, Diffusers ``-(k + 1)`` and the
    norm, so k = n - 1. SD 2 and SDXL: A1111 ignores the option (its OpenCLIP wrapper never
    reads it; SDXL always uses the penultimate layer, which is Diffusers' default), so None.
    """
    if family == "sd1" and stop_at_last_layers > 1:
        return stop_at_last_layers - 1
    return None


@dataclass
class _Encoder:
    tokenizer: Any
    model: Any
    pooled: bool  # SDXL's second encoder: its projected pooled output conditions the UNet too

    @property
    def ids(self) -> tuple[int, int, int]:
        tok = self.tokenizer
        return tok.bos_token_id, tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _encoders(pipe: Any) -> list[_Encoder]:
    if is_sdxl(pipe):
        pairs = [(pipe.tokenizer, pipe.text_encoder, False), (pipe.tokenizer_2, pipe.text_encoder_2, True)]
        return [_Encoder(t, m, p) for t, m, p in pairs if m is not None]
    return [_Encoder(pipe.tokenizer, pipe.text_encoder, False)]


def _chunks(encoder: _Encoder, text: str) -> list[tuple[list[int], list[float]]]:
    """A1111's tokenize_line: (token ids, weights) per 75-token chunk, without BOS/EOS."""
    runs = parse_attention(text)
    tokenized = encoder.tokenizer([t for t, _ in runs], truncation=False, add_special_tokens=False)["input_ids"]
    comma = encoder.tokenizer.convert_tokens_to_ids(",</w>")
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    for ids, run in zip(tokenized, runs):
        if is_break(run):
            close()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == CHUNK and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1  # the words after the last comma move on to the next chunk
                moved = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                close()
                tokens, weights = list(moved[0]), list(moved[1])
            if len(tokens) == CHUNK:
                close()
            tokens.append(token)
            weights.append(run[1])
    if tokens or not chunks:
        close()
    return chunks


def _ids_77(encoder: _Encoder, tokens: list[int]) -> list[int]:
    """BOS, the tokens, EOS, and padding to 77; what follows the first EOS is the tokenizer's pad (SD 2, SDXL's second)."""
    bos, eos, pad = encoder.ids
    ids = [bos, *tokens, *[eos] * (CHUNK + 1 - len(tokens))]
    first_eos = ids.index(eos)
    return ids[:first_eos + 1] + [pad] * (len(ids) - first_eos - 1)


def _hidden(encoder: _Encoder, ids: torch.Tensor, clip_skip: int | None, sdxl: bool):
    """(hidden states, pooled or None) for a batch of 77-token rows, chosen as Diffusers' encode_prompt does."""
    if sdxl:
        out = encoder.model(ids, output_hidden_states=True)
        pooled = out[0] if encoder.pooled and out[0].ndim == 2 else None
        return out.hidden_states[-_layer_back(out, (clip_skip or 0) + 2)], pooled
    if clip_skip is None:
        return encoder.model(ids)[0], None
    out = encoder.model(ids, output_hidden_states=True)
    _layer_back(out, clip_skip + 1)
    # transformers >= 5.6 flattened CLIPTextModel (no .text_model), which breaks Diffusers' own
    # clip_skip on SD 1/2 (huggingface/diffusers#14124); older versions nest the norm in text_model
    norm = getattr(encoder.model, "text_model", encoder.model).final_layer_norm
    return norm(out.hidden_states[-(clip_skip + 1)]), None


def _layer_back(out: Any, back: int) -> int:
    """``back``, when the text encoder has that many hidden states to count back; else ClipSkip is refused."""
    if back > len(out.hidden_states):
        from pico.errors import InvalidRequest

        layers = len(out.hidden_states) - 1  # the embeddings, then one per layer
        raise InvalidRequest(f"ClipSkip goes back further than this model's text encoder has layers ({layers})",
                             field="ClipSkip", hint="Lower ClipSkip (2 is the usual one).")
    return back


def check_clip_skip(pipe: Any, clip_skip: int) -> int:
    """Diffusers' ``clip_skip`` for an SDXL call, refused (not an IndexError) past its text encoders' layers."""
    layers = min(encoder.model.config.num_hidden_layers for encoder in _encoders(pipe))
    if clip_skip + 2 > layers + 1:
        from pico.errors import InvalidRequest

        raise InvalidRequest(f"ClipSkip goes back further than this model's text encoder has layers ({layers})",
                             field="ClipSkip", hint="Lower ClipSkip (2 is the usual one).")
    return clip_skip


def _emphasize(z: torch.Tensor, weights: list[list[float]]) -> torch.Tensor:
    """A1111's "Original" emphasis: scale each token's hidden state by its weight, then restore the batch mean."""
    import torch

    if all(w == 1.0 for row in weights for w in row):
        return z  # exactly what the arithmetic below gives, without rounding through float32
    multipliers = torch.asarray(weights, device=z.device)  # float32, like A1111's: half z is promoted
    original_mean = z.mean()
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    return z * (original_mean / z.mean())


def _encode_texts(pipe: Any, encoder: _Encoder, texts: list[str], clip_skip: int | None, sdxl: bool):
    """(S, 77*K, C) hidden states and (S, P) pooled (or None) for one prompt's scheduled texts, as one A1111 batch."""
    import torch

    device = pipe._execution_device
    per_text = [_chunks(encoder, text) for text in texts]
    count = max(len(chunks) for chunks in per_text)
    empty = ([], [])
    states, pooled = [], None
    for index in range(count):
        batch = [chunks[index] if index < len(chunks) else empty for chunks in per_text]
        ids = torch.tensor([_ids_77(encoder, tokens) for tokens, _ in batch], device=device)
        z, pool = _hidden(encoder, ids, clip_skip, sdxl)
        states.append(_emphasize(z, [[1.0, *w, *[1.0] * (CHUNK + 1 - len(w))] for _, w in batch]))
        if index == 0:
            pooled = pool
    return torch.cat(states, dim=1).to(encoder.model.dtype), pooled


@dataclass
class _Conditioning:
    """One prompt's scheduled embeddings: row j conditions the steps up to ``ends[j]``."""

    ends: list[int]
    embeds: torch.Tensor  # (S, T, C)
    pooled: torch.Tensor | None  # (S, P), SDXL only

    def at(self, step: int) -> int:
        return schedule_index([(end, None) for end in self.ends], step)


def _condition(pipe: Any, plan: PromptPlan, clip_skip: int | None) -> _Conditioning:
    sdxl = is_sdxl(pipe)
    parts, pooled = [], None
    for encoder in _encoders(pipe):
        z, pool = _encode_texts(pipe, encoder, plan.texts, clip_skip, sdxl)
        parts.append(z)
        pooled = pool if pool is not None else pooled
    length = max(p.shape[1] for p in parts)
    if any(p.shape[1] != length for p in parts):  # the two SDXL tokenizers split differently: pad the shorter
        empties = [_empty_chunk(pipe, e, clip_skip, sdxl) for e in _encoders(pipe)]
        parts = [_pad(p, length, e) for p, e in zip(parts, empties)]
    return _Conditioning([end for end, _ in plan.schedule], _cat_channels(parts), pooled)


def _cat_channels(parts: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def _empty_chunk(pipe: Any, encoder: _Encoder, clip_skip: int | None, sdxl: bool) -> torch.Tensor:
    return _encode_texts(pipe, encoder, [""], clip_skip, sdxl)[0]


def _pad(embeds: torch.Tensor, length: int, empty: torch.Tensor) -> torch.Tensor:
    """Append empty-prompt chunks up to ``length`` tokens (A1111's pad_cond_uncond)."""
    import torch

    repeats = (length - embeds.shape[1]) // empty.shape[1]
    if repeats <= 0:
        return embeds
    return torch.cat([embeds, empty.expand(embeds.shape[0], -1, -1).repeat(1, repeats, 1)], dim=1)


@dataclass
class PromptEmbeddings:
    """The pipeline keyword arguments for a batch of prompts, and what is needed to switch them during sampling."""

    kwargs: dict[str, Any]  # prompt_embeds, negative_prompt_embeds (+ the pooled pair on SDXL), for step 0
    positive: list[_Conditioning]
    negative: list[_Conditioning]
    num_images: list[int]  # images of each prompt
    sdxl: bool
    guidance_factors: list[float]
    warnings: list[str] = field(default_factory=list)
    loras: list[list] = field(default_factory=list)  # per prompt, the <lora:...> tags cut from it

    @property
    def changes_during_sampling(self) -> bool:
        """True when prompt editing or alternation switches the conditioning after the first step."""
        return any(len(c.ends) > 1 for c in self.positive + self.negative)

    def guidance_scale(self, base: float) -> float:
        """``base`` times A1111's trailing ``:W`` sub-prompt weight (the same for every prompt of the batch)."""
        if len(set(self.guidance_factors)) > 1:
            raise ValueError("Prompts with different A1111 guidance weights (a trailing ':W') cannot share one call")
        return base * self.guidance_factors[0]

    def _tensors(self, step: int, per_image: bool = True) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        """(positive, negative, pooled, negative pooled) conditioning ``step``, one row per image or per prompt."""
        import torch

        counts = torch.tensor(self.num_images)

        def stack(conds: list[_Conditioning], pooled: bool):
            rows = torch.stack([(c.pooled if pooled else c.embeds)[c.at(step)] for c in conds])
            return rows.repeat_interleave(counts.to(rows.device), dim=0) if per_image else rows

        pos, neg = stack(self.positive, False), stack(self.negative, False)
        if not self.sdxl:
            return pos, neg, None, None
        return pos, neg, stack(self.positive, True), stack(self.negative, True)

    def step_callback(self, pipe: Any, inner: Callable | None = None,
                      inner_inputs: tuple[str, ...] = ()) -> dict[str, Any]:
        """The ``callback_on_step_end`` arguments that apply prompt editing, calling ``inner`` (PICO's own) first.

        After step i the embeddings for step i+1 go into the tensors the loop reads: with
        classifier-free guidance, ``prompt_embeds`` is the pipeline's [negative; positive] concatenation
        (and on SDXL ``add_text_embeds`` the pooled one). Returns ``inner`` alone when nothing changes.
        """
        if not self.changes_during_sampling:
            return {"callback_on_step_end": inner} if inner is not None else {}
        needed = ["prompt_embeds"] + (["add_text_embeds"] if self.sdxl else [])
        allowed = getattr(pipe, "_callback_tensor_inputs", [])
        if not all(name in allowed for name in needed):
            self.warnings.append("Prompt editing and alternation ([from:to:when], [a|b]) were not applied: "
                                 f"{type(pipe).__name__} cannot switch prompts during sampling; the first step's "
                                 "prompt was used throughout.")
            return {"callback_on_step_end": inner} if inner is not None else {}
        current = [tuple(c.at(0) for c in self.positive + self.negative)]

        def on_step_end(p: Any, index: int, timestep: Any, tensors: dict) -> dict:
            import torch

            if inner is not None:
                tensors = inner(p, index, timestep, tensors)
            key = tuple(c.at(index + 1) for c in self.positive + self.negative)
            if key != current[0]:
                current[0] = key
                pos, neg, pooled, neg_pooled = self._tensors(index + 1)
                guided = getattr(p, "do_classifier_free_guidance", True)
                tensors["prompt_embeds"] = torch.cat([neg, pos]) if guided else pos
                if self.sdxl:
                    tensors["add_text_embeds"] = torch.cat([neg_pooled, pooled]) if guided else pooled
            return tensors

        inputs = list(dict.fromkeys([*inner_inputs, *needed]))
        return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": inputs}


def _as_list(value: Any, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def _checked(plan: Callable, text: str, steps: int, *, field_name: str, **options: Any) -> PromptPlan:
    """The plan of ``text``, its every scheduled text checked, a syntax error naming the field it is in."""
    try:
        result = plan(text, steps, **options)
        for scheduled in result.texts:
            parse_attention(scheduled)
        return result
    except PromptSyntaxError as error:
        error.field = error.field or field_name
        raise


def encode_prompts(pipe: Any, prompt: str | list[str], negative: str | list[str | None] | None = None, *,
                   steps: int, clip_skip: int | None = None, num_images: int | list[int] = 1,
                   hires_steps: int | None = None) -> PromptEmbeddings:
    """Embeddings for ``prompt`` (one, or a list for a batched call) read with A1111's syntax.

    ``num_images`` as an int: ``.kwargs`` hold one row per prompt; pass it as num_images_per_prompt.
    As a list (images of each prompt, batched requests): one row per image; pass num_images_per_prompt=1.
    ``steps`` is the call's num_inference_steps: editing switches count the scheduler's model calls,
    steps x its order, as A1111 counts second-order samplers (``hires_steps``: A1111's hires pass).
    A ``None`` negative is Diffusers' "no negative prompt": zeros on SDXL models made with
    force_zeros_for_empty_prompt (A1111 zeros an empty negative on SDXL), the empty prompt otherwise.
    """
    import torch

    prompts = _as_list(prompt, 1)
    negatives = _as_list(negative, len(prompts))
    counts = num_images if isinstance(num_images, list) else [num_images] * len(prompts)
    if not len(negatives) == len(counts) == len(prompts):
        raise ValueError(f"{len(prompts)} prompts, {len(negatives)} negative prompts, {len(counts)} image counts")
    order = max(1, int(getattr(pipe.scheduler, "order", 1) or 1))
    total, hires = steps * order, hires_steps * order if hires_steps is not None else None
    sdxl = is_sdxl(pipe)
    zeros = sdxl and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    plans = [_checked(plan_prompt, p, total, hires_steps=hires, field_name="Phrase") for p in prompts]
    negative_plans = [None if n is None and zeros else _checked(plan_prompt, n or "", total, negative=True,
                                                                hires_steps=hires, field_name="NegativePhrase")
                      for n in negatives]
    encoded: dict[tuple, _Conditioning] = {}  # the same text in several requests of a batch is encoded once

    def condition(plan: PromptPlan) -> _Conditioning:
        key = tuple(plan.schedule)
        if key not in encoded:
            encoded[key] = _condition(pipe, plan, clip_skip)
        return encoded[key]

    with torch.no_grad():
        positive = [condition(plan) for plan in plans]
        negative_conds = [condition(plan) if plan is not None else None for plan in negative_plans]
        length = max(c.embeds.shape[1] for c in encoded.values())
        if any(c.embeds.shape[1] != length for c in encoded.values()):
            empty = _cat_channels([_empty_chunk(pipe, e, clip_skip, sdxl) for e in _encoders(pipe)])
            for cond in encoded.values():
                cond.embeds = _pad(cond.embeds, length, empty)
        if None in negative_conds:
            first = positive[0]
            nothing = _Conditioning([total], torch.zeros_like(first.embeds[:1]), torch.zeros_like(first.pooled[:1]))
            negative_conds = [n if n is not None else nothing for n in negative_conds]
    result = PromptEmbeddings({}, positive, negative_conds, counts, sdxl, [p.guidance_factor for p in plans],
                              list(dict.fromkeys(w for plan in plans for w in plan.warnings)),
                              [plan.loras for plan in plans])
    pos, neg, pooled, neg_pooled = result._tensors(0, per_image=isinstance(num_images, list))
    result.kwargs = {"prompt_embeds": pos, "negative_prompt_embeds": neg}
    if sdxl:
        result.kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=neg_pooled)
    return result


def needs_embeddings(pipe: Any, prompts: list[str], negatives: list[str | None], clip_skip: int | None = None) -> bool:
    """True when Diffusers' own encoding would differ from A1111's: syntax, over 75 tokens, or clip skip on SD 1/2.

    (Diffusers' SD 1/2 clip_skip fails with transformers 5.6+, huggingface/diffusers#14124; SDXL's works.)
    """
    if clip_skip and not is_sdxl(pipe):
        return True
    if any(uses_syntax(p) for p in prompts) or any(uses_syntax(n, negative=True) for n in negatives):
        return True
    for encoder in _encoders(pipe):
        texts = [t for t in [*prompts, *negatives] if t and len(t.encode("utf-8")) > CHUNK]
        if texts and any(len(ids) > CHUNK for ids in encoder.tokenizer(texts, add_special_tokens=False,
                                                                        truncation=False)["input_ids"]):
            return True
    return False


def chunk_count(pipe: Any, prompt: str, negative: str | None, steps: int) -> int:
    """How many 77-token chunks a prompt and its negative make, tokenizing only (requests batch alike when equal)."""
    texts = plan_prompt(prompt, steps).texts + plan_prompt(negative or "", steps, negative=True).texts
    return max(len(_chunks(encoder, text)) for encoder in _encoders(pipe) for text in texts)


def diffusers_clip_skip(clip_skip: int | None) -> int | None:
    """Diffusers' ``clip_skip`` (layers skipped) for a request's ClipSkip (A1111's count: 1 = the last layer)."""
    return clip_skip - 1 if clip_skip and clip_skip > 1 else None


def weighted_phrases(pipe: Any, requests: list[Any], steps: int,
                     hires_steps: int | None = None) -> PromptEmbeddings | None:
    """The requests' phrases as AUTOMATIC1111 reads them, or None where Diffusers' own encoding is the same.

    None too for pipelines without a CLIP text encoder to weight, and for PromptSyntax "literal" (whose
    clip skip, on SDXL, Diffusers applies itself).
    """
    first = requests[0]
    if getattr(pipe, "tokenizer", None) is None or getattr(pipe, "text_encoder", None) is None \
            or not hasattr(first, "phrase"):
        return None
    clip_skip = diffusers_clip_skip(first.clip_skip)
    phrases = [r.phrase for r in requests]
    negatives = [r.negative_phrase for r in requests]
    if first.prompt_syntax == "literal":
        if not clip_skip or is_sdxl(pipe):
            return None
        phrases = [literal(text) for text in phrases]  # Diffusers' SD 1/2 clip skip fails: ours, on escaped text
        negatives = [literal(text) if text is not None else None for text in negatives]
    elif not needs_embeddings(pipe, phrases, negatives, clip_skip):
        return None
    counts: int | list[int] = first.total if len(requests) == 1 else [r.total for r in requests]
    return encode_prompts(pipe, phrases if len(requests) > 1 else phrases[0],
                          negatives if len(requests) > 1 else negatives[0], steps=steps, clip_skip=clip_skip,
                          num_images=counts, hires_steps=hires_steps)


def literal(text: str) -> str:
    """``text`` escaped so that A1111's syntax reads it as the characters it is."""
    return "".join("\\" + char if char in "\\()[]" else char for char in text)
