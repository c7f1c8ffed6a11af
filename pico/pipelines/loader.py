"""Loading models and keeping them: safetensors loading with clear errors, and the warm cache.

Where a model loads from is the catalog's business (``pico.catalog.resolver``): a Diffusers
folder, the hub, or a single-file checkpoint with the configuration folder of its family
(``pico.catalog.checkpoint_configs``). Loaded pipelines stay resident in a bounded
least-recently-used cache keyed by what changes the weights (model and dtype); every pipeline
family derives its own pipeline from them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

from pico.catalog.checkpoint_configs import PIPELINE_CLASSES, PREDICTION_TYPES, ConfigFolder
from pico.catalog.files import CheckpointFile
from pico.catalog.resolver import FAMILY_WORDS, ModelSource
from pico.errors import ModelUnavailable
from pico.pipelines.device import release_frames

log = logging.getLogger("pico")


def load_pipeline(source: ModelSource, dtype: Any, offline: bool,
                  fault: Callable[[str], None] | None = None) -> Any:
    """Load a pipeline from safetensors (no pickles, no remote code), without a safety checker."""
    from diffusers import DiffusionPipeline

    with _load_errors(source, offline):
        if fault is not None:
            fault(source.model_id)
        config = DiffusionPipeline.load_config(source.location, revision=source.revision)
        extra = {}
        if "safety_checker" in config:
            extra = {"safety_checker": None, "requires_safety_checker": False}
        return DiffusionPipeline.from_pretrained(
            source.location, revision=source.revision, dtype=dtype, use_safetensors=True, **extra
        )


def load_checkpoint(file: CheckpointFile, config: ConfigFolder, dtype: Any,
                    fault: Callable[[str], None] | None = None) -> Any:
    """Load a single-file checkpoint with its family's configuration folder: offline, safetensors only.

    Diffusers converts the original (LDM) layout; ``config`` supplies the model index, component
    configs, scheduler and tokenizers, so nothing is fetched. A prediction type the file states
    (its .yaml, its metadata) that differs from the configuration's is set on the scheduler.
    """
    import diffusers

    cls = getattr(diffusers, PIPELINE_CLASSES[file.family])
    extra = {} if "XL" in cls.__name__ else {"requires_safety_checker": False}
    with _checkpoint_errors(file, config):
        if fault is not None:
            fault(file.name)
        pipe = cls.from_single_file(str(file.path), config=str(config.folder), dtype=dtype, local_files_only=True,
                                    **extra)
    wanted = PREDICTION_TYPES.get(file.prediction or "")
    if wanted and pipe.scheduler.config.get("prediction_type") != wanted:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=wanted)
    return pipe


@contextmanager
def _checkpoint_errors(file: CheckpointFile, config: ConfigFolder) -> Iterator[None]:
    """A checkpoint that will not load is the file's fault: 422 (a retry cannot help), 404 once it is gone.

    Messages name the file as clients know it; the library's words (with paths) go to the log and Detail.
    """
    words = FAMILY_WORDS.get(file.family or "", file.family)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            yield
    except FileNotFoundError as exc:
        raise _checkpoint_unavailable(file, exc, f"Checkpoint {file.name} is no longer in its folder", 404,
                                      "It was moved or deleted; list the checkpoints again.") from None
    except Exception as exc:
        if is_out_of_memory_error(exc):
            raise
        raise _checkpoint_unavailable(
            file, exc, f"Checkpoint {file.name} could not be loaded as an {words} model: its weights do not fit the "
            f"{words} layout ({config.origin} configuration of {config.model_id})", 422,
            "The file may be damaged or of a variant PICO does not know; the server log (or --verbose) says more.",
        ) from None


def _checkpoint_unavailable(file: CheckpointFile, exc: BaseException, message: str, status: int,
                            hint: str) -> ModelUnavailable:
    detail = _first_line(exc)
    log.warning("loading checkpoint %s failed: %s: %s", file.name, type(exc).__name__, detail)
    error = ModelUnavailable(message, status=status, hint=hint, detail=f"{type(exc).__name__}: {detail}")
    error.__cause__ = exc
    return error


def load_vae(source: ModelSource, dtype: Any, offline: bool) -> Any:
    """Load a standalone AutoencoderKL (the ema/mse VAEs) from safetensors."""
    from diffusers import AutoencoderKL

    with _load_errors(source, offline):
        return AutoencoderKL.from_pretrained(
            source.location, revision=source.revision, dtype=dtype, use_safetensors=True
        )


@contextmanager
def _load_errors(source: ModelSource, offline: bool) -> Iterator[None]:
    """Turn the many ways a load fails into ModelUnavailable: 404 when it does not exist, else 502.

    Messages speak of the model as the client named it; what the libraries said (which may name
    server paths) goes to the log and, with --verbose, to the error's Detail.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = "the models directory" if source.local else "the Hugging Face hub"
    try:
        with warnings.catch_warnings():  # Diffusers passes a hub argument that hub 1.x deprecates; not ours
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            yield
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise _unavailable(source, exc, f"Model {source.model_id} was not found on {where}",
                           hint="Check the model id, or put the model in the models directory as org/name.")
    except LocalEntryNotFoundError as exc:
        hint = ("The hub is offline (HF_HUB_OFFLINE); put the model in the models directory as "
                f"{source.model_id}/." if offline else "Check the network, or put the model in the models directory.")
        raise _unavailable(source, exc, f"Model {source.model_id} is not in the models directory or the hub cache, "
                           "and the hub could not be reached", status=404 if offline else 502, hint=hint)
    except EntryNotFoundError as exc:
        raise _unavailable(source, exc, f"Model {source.model_id} has no safetensors weights in {where}", status=502,
                           hint="PICO loads only safetensors weights (never pickles).")
    except OSError as exc:
        if not source.local and (offline or _says_missing(exc)):
            raise _unavailable(source, exc, f"Model {source.model_id} is not in the models directory"
                               + (" and the hub is offline (HF_HUB_OFFLINE)" if offline else " or on the hub"),
                               hint=f"Put the model in the models directory as {source.model_id}/ (org/name).")
        raise _unavailable(source, exc, f"Model {source.model_id} could not be loaded from {where}: its files are "
                           "missing, incomplete or unreadable", status=502,
                           hint="Check the model's files (the server log names the one at fault).")
    except (ValueError, KeyError, json.JSONDecodeError, RuntimeError) as exc:
        if is_out_of_memory_error(exc):
            raise
        raise _unavailable(source, exc, f"Model {source.model_id} could not be loaded from {where}: its "
                           "configuration or weights do not fit together", status=502,
                           hint="Check that the model is a complete Diffusers pipeline (the server log says more).")


def _unavailable(source: ModelSource, exc: BaseException, message: str, status: int = 404,
                 hint: str | None = None) -> ModelUnavailable:
    """A ModelUnavailable in the client's terms; the library's own words go to the log and to Detail."""
    detail = _first_line(exc)
    log.warning("loading %s from %s failed: %s: %s", source.model_id, source.location, type(exc).__name__, detail)
    error = ModelUnavailable(message, status=status, hint=hint, detail=f"{type(exc).__name__}: {detail}")
    error.__cause__ = exc
    return error


def is_out_of_memory_error(exc: BaseException) -> bool:
    """True for a device out-of-memory error (torch's, or the RuntimeError older builds raise)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _says_missing(exc: BaseException) -> bool:
    text = str(exc)
    return "not a valid model identifier" in text or "does not appear to have a file named" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class CacheEntry:
    """One loaded model and the calls using it."""

    key: Hashable
    value: Any = None
    users: int = 0
    load_seconds: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class ModelCache:
    """A bounded LRU of loaded models; a model in use is never evicted, and each loads once.

    A model loads in two steps: ``load(key)`` reads it (from disk, into host memory: where most
    failures happen), then ``place(key, value)`` moves it to the device. Least recently used idle
    models are evicted between the two, only once the read succeeded, so a model that fails to
    load never costs a warm one its place; loads in progress count against ``max_models``, so
    concurrent loads cannot overshoot it. ``discard()`` frees what a failed ``place`` took, once the
    cache holds nothing of it.
    """

    def __init__(self, load: Callable[[Hashable], Any], max_models: int,
                 release: Callable[[Any], None] = lambda _value: None,
                 place: Callable[[Hashable, Any], Any] = lambda _key, value: value,
                 discard: Callable[[], None] = lambda: None):
        self._load = load
        self._place = place
        self._release = release
        self._discard = discard
        self.max_models = max_models
        self._entries: OrderedDict[Hashable, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    @contextmanager
    def use(self, key: Hashable) -> Iterator[CacheEntry]:
        """The entry for ``key``, loading it if needed, held (not evictable) until the block ends."""
        entry, loader = self._claim(key)
        try:
            if loader:
                self._fill(entry)
            else:
                entry.ready.wait()
                if entry.error is not None:
                    raise entry.error
            yield entry
        finally:
            with self._lock:
                entry.users -= 1
            self._evict()

    def keys(self) -> list[Hashable]:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.ready.is_set() and e.error is None]

    def entries(self) -> list[CacheEntry]:
        """Loaded entries, least recently used first."""
        with self._lock:
            return [e for e in self._entries.values() if e.ready.is_set() and e.error is None]

    def clear(self) -> None:
        """Drop every model not in use."""
        with self._lock:
            idle = [k for k, e in self._entries.items() if e.users == 0 and e.ready.is_set()]
            dropped = [self._entries.pop(k) for k in idle]
        for entry in dropped:
            if entry.error is None:
                self._release(entry.value)

    def _claim(self, key: Hashable) -> tuple[CacheEntry, bool]:
        with self._lock:
            entry = self._entries.get(key)
            loader = entry is None
            if loader:
                entry = self._entries[key] = CacheEntry(key)
            self._entries.move_to_end(key)
            entry.users += 1
            return entry, loader

    def _fill(self, entry: CacheEntry) -> None:
        started = time.perf_counter()
        value = placed = None
        try:
            value = self._load(entry.key)
            self._evict()  # the read worked: make room for it (loads in progress counted)
            placed = self._place(entry.key, value)
            entry.value = placed
        except BaseException as exc:
            entry.error = exc
            with self._lock:
                self._entries.pop(entry.key, None)
            if value is not None:
                # The error (kept in the entry for its waiters) and its frames must not keep the read model:
                # free it once nothing here holds it.
                release_frames(exc)
                value = placed = None
                self._discard()
            raise
        finally:
            entry.load_seconds = time.perf_counter() - started
            entry.ready.set()
        self.loads += 1
        log.info("loaded %s in %.1f s", entry.key, entry.load_seconds)

    def _evict(self) -> None:
        """Release least recently used idle models while loaded and loading ones are over the bound."""
        dropped = []
        with self._lock:
            excess = sum(1 for e in self._entries.values() if e.error is None) - self.max_models
            for entry in list(self._entries.values()):
                if excess <= 0:
                    break
                if entry.users == 0 and entry.ready.is_set() and entry.error is None:
                    del self._entries[entry.key]
                    dropped.append(entry)
                    excess -= 1
        for entry in dropped:
            log.info("unloaded %s (least recently used)", entry.key)
            self._release(entry.value)
