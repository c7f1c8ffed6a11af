"""LoRA adapters on a loaded model: loaded once, kept (least recently used goes), switched while it is idle.

Adapters live on the model's shared modules (PEFT wraps the UNet's and text encoders' layers), so
every call on the model sees the set that is active: the engine switches sets only through the
model's :class:`~pico.pipelines.base.ModeGate`, when no call runs. The base weights never change:
adapters are activated with ``set_adapters`` and turned off with ``disable_lora``, never fused.
A file that fails to load leaves no adapter behind.

With ``--compile`` the UNet is compiled once: adapters then go into fixed slots prepared before
compiling (``enable_lora_hotswap``) and a new LoRA replaces the weights of an unused slot in place
(``load_lora_weights(..., hotswap=True)``), so it does not recompile.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import OrderedDict
from typing import Any, Callable

from pico.catalog.resolver import LoraChoice
from pico.errors import ModelUnavailable
from pico.pipelines.loader import is_out_of_memory_error

log = logging.getLogger("pico")

LoraMode = tuple[tuple[tuple[str, int, float], float, float], ...]  # ((file identity, weight, UNet weight), ...)


def lora_mode(choices: tuple[LoraChoice, ...]) -> LoraMode:
    """The LoRA part of a model's mode: each file's identity and weights; LoRAs at weight 0 do nothing and drop out."""
    return tuple((c.identity, c.weight, c.unet_weight) for c in choices if c.weight or c.unet_weight)


def adapter_name(identity: tuple[str, int, float]) -> str:
    """An adapter name for one version of one file (PEFT names modules after it: no dots, no paths)."""
    return "pico_" + hashlib.sha1(repr(identity).encode("utf-8")).hexdigest()[:16]


class LoraAdapters:
    """The LoRA adapters loaded into one pipeline and the set active on it. Not thread-safe: the gate orders calls."""

    def __init__(self, pipe: Any, max_loras: int, on_load: Callable[[LoraChoice], None] | None = None):
        self.pipe = pipe
        self.max_loras = max_loras
        self.on_load = on_load  # e.g. hash the file while it is in the page cache
        self.loaded: OrderedDict[tuple, str] = OrderedDict()  # file identity -> adapter name, LRU first
        self.active: LoraMode | None = ()  # None: unknown (a switch failed half way)
        self.loads = 0

    def activate(self, choices: tuple[LoraChoice, ...]) -> None:
        """Make exactly ``choices`` (with their weights) the active adapters, loading those not loaded yet."""
        mode = lora_mode(choices)
        if mode == self.active:
            return
        wanted = [c for c in choices if c.weight or c.unet_weight]
        keep = {c.identity for c in wanted}
        self.active = None
        names = [self._ensure(choice, keep) for choice in wanted]
        if not names:
            if self.loaded:
                self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, [self._weights(name, c) for name, c in zip(names, wanted)])
        self.active = mode

    def _weights(self, name: str, choice: LoraChoice) -> float | dict[str, float]:
        """One weight for the whole adapter, or one per component when the UNet's differs (A1111's TE:UNET)."""
        if choice.weight == choice.unet_weight:
            return choice.weight
        holders = [part for part, adapters in self.pipe.get_list_adapters().items() if name in adapters]
        return {part: choice.unet_weight if part in ("unet", "transformer") else choice.weight for part in holders}

    def _ensure(self, choice: LoraChoice, keep: set[tuple]) -> str:
        """The adapter of ``choice``, loading it (and evicting the least recently used ones not in ``keep``)."""
        identity = choice.identity
        if identity in self.loaded:
            self.loaded.move_to_end(identity)
            return self.loaded[identity]
        while len(self.loaded) >= self.max_loras:
            victim = next((i for i in self.loaded if i not in keep), None)
            if victim is None:
                break  # a set larger than --max-loras: keep them all for now
            self._unload(victim)
        name = adapter_name(identity)
        try:
            with warnings.catch_warnings():  # PEFT warns of a second adapter on a model: that is the point here
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                self.pipe.load_lora_weights(str(choice.file.path), adapter_name=name)
            if name not in self._present():
                raise ValueError("no layer of this model matched the file's LoRA weights")
        except Exception as exc:
            self._clean_up(name)
            if is_out_of_memory_error(exc):
                raise
            raise lora_unavailable(choice, exc) from None
        self.loaded[identity] = name
        self.loads += 1
        log.info("loaded LoRA %s", choice.file.name)
        if self.on_load is not None:
            self.on_load(choice)
        return name

    def _present(self) -> set[str]:
        """Adapter names present in any component of the pipeline."""
        return {name for names in self.pipe.get_list_adapters().values() for name in names}

    def _unload(self, identity: tuple) -> None:
        name = self.loaded.pop(identity)
        if self.loaded:
            self.pipe.delete_adapters([name])
        else:
            self.pipe.unload_lora_weights()  # the clean reset: no empty wrappers left on the modules
        log.info("unloaded LoRA adapter %s (least recently used)", name)

    def _clean_up(self, name: str) -> None:
        """Remove whatever a failed load left of adapter ``name``; if that fails, remove every adapter."""
        try:
            if name in self._present():
                if self.loaded:
                    self.pipe.delete_adapters([name])
                else:
                    self.pipe.unload_lora_weights()
            elif not self.loaded:
                self.pipe.unload_lora_weights()  # wrappers a load injected before failing
        except Exception:  # noqa: BLE001 - the reset below leaves the base model whatever went wrong
            log.exception("removing the failed LoRA %s failed; unloading every LoRA", name)
            self.pipe.unload_lora_weights()
            self.loaded.clear()


def lora_unavailable(choice: LoraChoice, exc: BaseException) -> ModelUnavailable:
    """A LoRA that will not load, in the client's terms (422: retrying cannot help); the details go to the log."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log.warning("loading LoRA %s failed: %s: %s", choice.file.name, type(exc).__name__, text)
    return ModelUnavailable(
        f"LoRA {choice.file.name} could not be applied to this model: its weights do not fit the model's layers",
        status=422, field=choice.field,
        hint="Check that the LoRA is made for this model's family (GET /api/v1/models lists each LoRA's family), "
             "or that the file is whole.", detail=f"{type(exc).__name__}: {text}")
