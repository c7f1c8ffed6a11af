"""The configurations single-file checkpoints load with, offline: models directory, hub cache, shipped skeletons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pico.catalog.checkpoint_configs import (
    CONFIG_MODELS,
    CheckpointConfigs,
    clip_merges,
    is_complete,
)
from pico.catalog.models import SD1_MODEL, SDXL_MODEL, SDXL_REFINER_MODEL, canonical

# Parameters of each component at the published sizes (SD 1.5, SD 2.1, SDXL base: the numbers their model cards
# and Diffusers report; the refiner's UNet: 2.26 B).
CLIP_L, OPEN_CLIP_H, BIG_G, VAE = 123_060_480, 340_387_840, 694_659_840, 83_653_863
PUBLISHED = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": {"text_encoder": CLIP_L, "unet": 859_520_964, "vae": VAE},
    "stable-diffusion-v1-5/stable-diffusion-inpainting": {"text_encoder": CLIP_L, "unet": 859_535_364, "vae": VAE},
    "stabilityai/stable-diffusion-2-1": {"text_encoder": OPEN_CLIP_H, "unet": 865_910_724, "vae": VAE},
    "stabilityai/stable-diffusion-2-1-base": {"text_encoder": OPEN_CLIP_H, "unet": 865_910_724, "vae": VAE},
    "stabilityai/stable-diffusion-2-inpainting": {"text_encoder": OPEN_CLIP_H, "unet": 865_925_124, "vae": VAE},
    "stabilityai/stable-diffusion-xl-base-1.0": {"text_encoder": CLIP_L, "text_encoder_2": BIG_G,
                                                 "unet": 2_567_463_684, "vae": VAE},
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": {"text_encoder": CLIP_L, "text_encoder_2": BIG_G,
                                                         "unet": 2_567_478_084, "vae": VAE},
    "stabilityai/stable-diffusion-xl-refiner-1.0": {"text_encoder_2": BIG_G, "unet": 2_259_526_660, "vae": VAE},
}
PROMPTS = ["a photo of a ginger cat", "(masterpiece:1.2), best quality, 8k uhd, RAW photo",
           "Café déjà vu, naïve façade — 東京 at night", "it's 12:30, isn't it? <lora:x:0.5>", "  lots   of\tspace  "]


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> CheckpointConfigs:
    return CheckpointConfigs(lambda _model: None, tmp_path_factory.mktemp("cache"), use_hub_cache=False)


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's table (CLIP's simple_tokenizer.py), written out again here to check PICO's against."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class HandBuiltClip:
    """OpenAI's CLIP BPE tokenizer, by hand, from the same merges (text cleaning: whitespace and lower case)."""

    def __init__(self, merges: tuple[str, ...]):
        import regex

        self.byte_encoder = bytes_to_unicode()
        pairs = [tuple(m.split()) for m in merges]
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: index for index, token in enumerate(vocab)}
        self.ranks = {pair: index for index, pair in enumerate(pairs)}
        self.pattern = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                     r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def __call__(self, text: str) -> list[int]:
        text = " ".join(text.split()).lower()
        ids = [self.encoder["<|startoftext|>"]]
        for token in self.pattern.findall(text):
            symbols = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids += [self.encoder[piece] for piece in self.bpe(symbols)]
        return ids + [self.encoder["<|endoftext|>"]]


def test_the_skeleton_tokenizers_are_clips_real_one(configs):
    from transformers import CLIPTokenizer

    by_hand = HandBuiltClip(clip_merges())
    assert len(clip_merges()) == 48_894
    folder = configs.skeleton(SDXL_MODEL)
    clip, open_clip = (CLIPTokenizer.from_pretrained(folder / name) for name in ("tokenizer", "tokenizer_2"))
    assert (len(clip), len(open_clip), clip.model_max_length) == (49_408, 49_408, 77)
    assert (clip.pad_token, clip.pad_token_id, open_clip.pad_token, open_clip.pad_token_id) == \
        ("<|endoftext|>", 49_407, "!", 0)
    for prompt in PROMPTS:
        assert clip(prompt).input_ids == by_hand(prompt) == open_clip(prompt).input_ids, prompt
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # CLIP's well-known ids


def test_each_skeleton_is_complete_and_builds_at_the_published_sizes(configs):
    import diffusers
    import torch
    import transformers

    assert {canonical(model) for model in CONFIG_MODELS.values()} == set(PUBLISHED)
    for model, sizes in PUBLISHED.items():
        folder = configs.skeleton(model)
        assert is_complete(folder), model
        index = json.loads((folder / "model_index.json").read_text())
        pipeline = getattr(diffusers, index["_class_name"])
        assert pipeline.load_config(folder)["_class_name"] == index["_class_name"]
        scheduler = index["scheduler"][1]
        getattr(diffusers, scheduler).from_config(getattr(diffusers, scheduler).load_config(folder / "scheduler"))
        counted = {}
        for name in sizes:
            library, class_name = index[name]
            cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
            with torch.device("meta"):
                module = cls.from_config(cls.load_config(folder / name)) if library == "diffusers" \
                    else cls(transformers.AutoConfig.from_pretrained(folder / name))
            counted[name] = sum(p.numel() for p in module.parameters())
        assert counted == sizes, model


def test_the_configuration_comes_from_the_models_directory_then_the_hub_cache_then_the_package(tmp_path, configs):
    models, hub = tmp_path / "models", tmp_path / "hub"
    shutil.copytree(configs.skeleton(SDXL_MODEL), models / SDXL_MODEL)
    snapshot = hub / "models--stabilityai--stable-diffusion-xl-refiner-1.0" / "snapshots" / ("a" * 40)
    shutil.copytree(configs.skeleton(SDXL_REFINER_MODEL), snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    incomplete = models / canonical(SD1_MODEL)
    incomplete.mkdir(parents=True)
    (incomplete / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))

    def local(model: str) -> Path | None:
        folder = models / model
        return folder if folder.is_dir() else None

    found = CheckpointConfigs(local, tmp_path / "cache", hub_cache=hub)
    assert (found.for_checkpoint("sdxl", None).folder, found.for_checkpoint("sdxl", None).origin) == \
        (models / SDXL_MODEL, "models directory")
    assert (found.for_checkpoint("sdxl-refiner", None).folder, found.for_checkpoint("sdxl-refiner", None).origin) == \
        (snapshot, "hub cache")
    sd1 = found.for_checkpoint("sd1", None)  # a folder without its component configs is passed over
    assert sd1.origin == "built-in" and sd1.folder.is_relative_to(tmp_path / "cache") and is_complete(sd1.folder)
    assert found.for_checkpoint("sd2", "epsilon").model_id == "stabilityai/stable-diffusion-2-1-base"
    assert found.for_checkpoint("sd2", None).model_id == "stabilityai/stable-diffusion-2-1"
    assert found.for_checkpoint("flux-dev", None) is None
