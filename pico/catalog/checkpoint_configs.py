"""The configuration a single-file checkpoint loads with: a Diffusers folder without weights, found offline.

Diffusers' ``from_single_file(path, config=<local Diffusers folder>)`` converts a checkpoint
without touching the network; the folder supplies the model index, the component configs, the
scheduler and the tokenizers. For a checkpoint of some family, PICO takes that folder from, in
order: the family's default model in the models directory, the same model in the Hugging Face
hub cache, or the skeleton shipped in this package (``configs/``: the published configs of those
models, weights left out), written once into PICO's cache folder with the real CLIP tokenizer.

The CLIP tokenizer's byte-pair merges ship as ``configs/clip/bpe_simple_vocab_16e6.txt.gz``
(from OpenAI's CLIP via open_clip, MIT licence: ``configs/clip/LICENSE``); its vocabulary is
derived from them as OpenAI's and Hugging Face's CLIP tokenizers derive it. No torch here.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from pico.catalog.models import (
    SD1_INPAINT_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SDXL_INPAINT_MODEL,
    SDXL_MODEL,
    SDXL_REFINER_MODEL,
    canonical,
)

log = logging.getLogger("pico")

SKELETONS = Path(__file__).parent / "configs"
CLIP_MERGES = SKELETONS / "clip" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGE_COUNT = 49152 - 256 - 2  # OpenAI's vocabulary: 256 bytes, 256 word ends, these merges, 2 specials
SKELETON_VERSION = 1  # bump when a shipped skeleton changes, so cached copies are rewritten
SD2_BASE_MODEL = "stabilityai/stable-diffusion-2-1-base"
SD2_INPAINT_MODEL = "stabilityai/stable-diffusion-2-inpainting"

# (family, prediction) -> the published model whose configuration fits; prediction None is the family's default.
CONFIG_MODELS: dict[tuple[str, str | None], str] = {
    ("sd1", None): SD1_MODEL,
    ("sd1-inpaint", None): SD1_INPAINT_MODEL,
    ("sd2", None): SD2_MODEL,  # SD 2.1 at 768 pixels, v-prediction: what Diffusers takes an SD 2 file for
    ("sd2", "v"): SD2_MODEL,
    ("sd2", "epsilon"): SD2_BASE_MODEL,  # the 512-pixel SD 2 base models predict noise
    ("sd2-inpaint", None): SD2_INPAINT_MODEL,
    ("sdxl", None): SDXL_MODEL,
    ("sdxl-inpaint", None): SDXL_INPAINT_MODEL,
    ("sdxl-refiner", None): SDXL_REFINER_MODEL,
}
PIPELINE_CLASSES = {  # family -> the Diffusers pipeline class its single files load as
    "sd1": "StableDiffusionPipeline",
    "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "sd2": "StableDiffusionPipeline",
    "sd2-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
}
LOADABLE_FAMILIES = tuple(PIPELINE_CLASSES)
PREDICTION_TYPES = {"v": "v_prediction", "epsilon": "epsilon"}  # catalog word -> the scheduler's


def config_model(family: str, prediction: str | None) -> str | None:
    """The published model whose configuration fits a checkpoint of ``family``; None if PICO has none."""
    return CONFIG_MODELS.get((family, prediction)) or CONFIG_MODELS.get((family, None))


@dataclass(frozen=True)
class ConfigFolder:
    """Where a checkpoint's configuration comes from."""

    folder: Path
    model_id: str  # the published model it is the configuration of
    origin: str  # "models directory", "hub cache" or "built-in"


class CheckpointConfigs:
    """Finds (or writes) the configuration folder for each checkpoint family; safe to call from many threads."""

    def __init__(self, local_folder: Callable[[str], Path | None], cache_dir: Path, *,
                 hub_cache: Path | None = None, skeletons: Path = SKELETONS, use_hub_cache: bool = True):
        self._local_folder = local_folder  # the resolver's: model id -> its models-directory folder
        self.cache_dir = Path(cache_dir)
        self.hub_cache = hub_cache
        self.skeletons = Path(skeletons)
        self.use_hub_cache = use_hub_cache
        self._lock = threading.Lock()

    def for_checkpoint(self, family: str, prediction: str | None) -> ConfigFolder | None:
        """The configuration folder for a checkpoint of ``family``, or None for families PICO cannot load."""
        model = config_model(family, prediction)
        if model is None:
            return None
        local = self._local_folder(model)
        if local is not None and is_complete(local):
            return ConfigFolder(local, model, "models directory")
        cached = self._hub_cached(model) if self.use_hub_cache else None
        if cached is not None:
            return ConfigFolder(cached, model, "hub cache")
        return ConfigFolder(self.skeleton(model), model, "built-in")

    def skeleton(self, model: str) -> Path:
        """The shipped skeleton of ``model``, written (once) with its tokenizer files into the cache folder."""
        source = self.skeletons / canonical(model)
        if not (source / "model_index.json").is_file():
            raise KeyError(f"no configuration skeleton for {model}")
        target = self.cache_dir / "checkpoint-configs" / f"v{SKELETON_VERSION}" / canonical(model)
        with self._lock:
            if not is_complete(target):
                write_skeleton(source, target)
        return target

    def _hub_cached(self, model: str) -> Path | None:
        """The hub cache's snapshot of ``model`` when it holds a complete configuration (never downloads)."""
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError:  # pragma: no cover - huggingface_hub comes with Diffusers
            return None
        try:
            folder = Path(snapshot_download(canonical(model), cache_dir=self.hub_cache, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        return folder if is_complete(folder) else None


def is_complete(folder: Path) -> bool:
    """True when ``folder`` has a model index and, for each component it names, that component's config files."""
    try:
        index = json.loads((folder / "model_index.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            continue
        if name.startswith("tokenizer"):
            has = (folder / name / "tokenizer.json").is_file() or all(
                (folder / name / file).is_file() for file in ("vocab.json", "merges.txt"))
        elif name == "scheduler":
            has = (folder / name / "scheduler_config.json").is_file()
        elif name in ("feature_extractor",):
            has = (folder / name / "preprocessor_config.json").is_file()
        else:
            has = (folder / name / "config.json").is_file()
        if not has:
            return False
    return True


def write_skeleton(source: Path, target: Path) -> None:
    """Copy a skeleton's configs to ``target``, adding CLIP's vocab.json and merges.txt to each tokenizer folder
    that has no vocabulary of its own."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".writing-", dir=target.parent))
    try:
        shutil.copytree(source, scratch, dirs_exist_ok=True)
        for tokenizer in sorted(p for p in scratch.iterdir() if p.is_dir() and p.name.startswith("tokenizer")):
            if not (tokenizer / "vocab.json").exists() and not (tokenizer / "tokenizer.json").exists():
                write_clip_vocabulary(tokenizer)  # the shipped skeletons carry none: CLIP's, from its merges
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)  # a skeleton half written is never taken for a whole one
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("wrote the built-in configuration of %s", target.name)


@lru_cache(maxsize=1)
def clip_merges() -> tuple[str, ...]:
    """CLIP's byte-pair merges, "a b" per line, in rank order (the 48,894 OpenAI's tokenizer uses)."""
    lines = gzip.decompress(CLIP_MERGES.read_bytes()).decode("utf-8").split("\n")
    return tuple(lines[1:CLIP_MERGE_COUNT + 1])  # the first line is the file's version header


def byte_symbols() -> list[str]:
    """The 256 byte-level symbols of CLIP's BPE (each byte as a printable character), in vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def clip_vocabulary() -> dict[str, int]:
    """CLIP's 49,408-token vocabulary: the byte symbols, the same ending a word, each merge's result, then
    ``<|startoftext|>`` and ``<|endoftext|>``."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [merge.replace(" ", "") for merge in clip_merges()]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_vocabulary(folder: Path) -> None:
    """Write vocab.json and merges.txt (the files Hugging Face's CLIPTokenizer reads) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocabulary(), ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(clip_merges()) + "\n", "utf-8")
