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


class HotSwapLoraAdapters(LoraAdapters):
    """LoRAs on a compiled UNet, which must keep its structure: fixed adapter slots, new LoRAs swapped in place.

    Slot i holds one LoRA's UNet layers, padded to ``target_rank`` (PEFT's compiled hot-swap); every
    slot stays active, and a LoRA's weight is written into its slot's scaling tensors in place, so
    changing sets or weights changes no Python value the compiled graph depends on: a new LoRA
    replaces an unused slot's weights (``hotswap=True``) without recompiling. Only a new slot (the
    first time a set has that many LoRAs) or a LoRA of higher rank than ``target_rank`` compiles
    again. Slots not in the set run at weight 0, which leaves the base output bit for bit. Text
    encoders are not compiled: their LoRA layers load and switch as usual (Diffusers cannot hot-swap
    them).
    """

    def __init__(self, pipe: Any, max_loras: int, target_rank: int,
                 on_load: Callable[[LoraChoice], None] | None = None):
        super().__init__(pipe, max_loras, on_load)
        self.target_rank = target_rank
        self.slots: list[str] = []  # UNet adapter names, in creation order
        self.slot_of: OrderedDict[tuple, str | None] = OrderedDict()  # file identity -> its slot, LRU first
        self.text_adapters: dict[tuple, str] = {}  # file identity -> its text-encoder adapter
        self._base: dict[str, list[tuple[Any, float]]] = {}  # slot -> (LoRA layer, its scaling at weight 1)

    def activate(self, choices: tuple[LoraChoice, ...]) -> None:
        """Give each chosen LoRA a slot (swapping it in when new), then write every slot's weight."""
        mode = lora_mode(choices)
        if mode == self.active:
            return
        wanted = [c for c in choices if c.weight or c.unet_weight]
        keep = {c.identity for c in wanted}
        self.active = None
        slots = [self._slot_for(choice, keep) for choice in wanted]
        weights = dict.fromkeys(self.slots, 0.0)
        for choice, slot in zip(wanted, slots):
            if slot is not None:
                weights[slot] = choice.unet_weight
        for slot, weight in weights.items():
            for layer, base in self._base.get(slot, []):
                _set_scaling(layer, slot, base * weight)
        self._activate_text_encoders(wanted)
        self.active = mode

    def _activate_text_encoders(self, wanted: list[LoraChoice]) -> None:
        from diffusers.loaders.lora_base import (
            disable_lora_for_text_encoder,
            enable_lora_for_text_encoder,
            set_adapters_for_text_encoder,
        )

        for encoder in self._text_encoders():
            present = set(getattr(encoder, "peft_config", None) or {})
            chosen = [(self.text_adapters[c.identity], c.weight) for c in wanted
                      if self.text_adapters.get(c.identity) in present]
            if chosen:
                enable_lora_for_text_encoder(encoder)
                set_adapters_for_text_encoder([name for name, _ in chosen], encoder, [w for _, w in chosen])
            elif present:
                disable_lora_for_text_encoder(encoder)

    def _text_encoders(self) -> list[Any]:
        return [encoder for name in ("text_encoder", "text_encoder_2")
                if (encoder := getattr(self.pipe, name, None)) is not None]

    def _slot_for(self, choice: LoraChoice, keep: set[tuple]) -> str | None:
        identity = choice.identity
        if identity in self.slot_of:
            self.slot_of.move_to_end(identity)
            return self.slot_of[identity]
        taken = {slot for i, slot in self.slot_of.items() if i in keep}
        empty = [slot for slot in self.slots if slot not in self.slot_of.values()]  # left by a failed swap
        victim = next((i for i, slot in self.slot_of.items() if slot not in taken and i not in keep), None)
        slot: str | None = None  # None: a new slot (the first time a set has this many LoRAs; compiles once)
        if empty:
            slot = empty[0]
        elif victim is not None:  # reuse the least recently used LoRA's slot: swapped in place, no compiling
            slot = self.slot_of.pop(victim)
            self._drop_text_adapter(victim)
        try:
            slot = self._load(choice, slot)
        except Exception as exc:
            if is_out_of_memory_error(exc):
                raise
            raise lora_unavailable(choice, exc) from None
        self.slot_of[identity] = slot
        self.loads += 1
        log.info("loaded LoRA %s into %s", choice.file.name, slot or "the text encoders")
        if self.on_load is not None:
            self.on_load(choice)
        return slot

    def _load(self, choice: LoraChoice, slot: str | None) -> str | None:
        """Load ``choice`` into ``slot`` (hot-swapped) or a new slot (None); its text-encoder layers as usual."""
        from peft.utils.hotswap import prepare_model_for_compiled_hotswap

        pipe = self.pipe
        state, alphas, metadata = pipe.lora_state_dict(str(choice.file.path), unet_config=pipe.unet.config,
                                                       return_lora_metadata=True)
        if not all("lora" in key for key in state):
            raise ValueError("not a LoRA: some weights are not LoRA layers")
        unet_state = {key: value for key, value in state.items() if key.startswith("unet.")}
        if unet_state:
            swap = slot is not None
            slot = slot or f"pico_slot{len(self.slots)}"
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                    pipe.load_lora_into_unet(unet_state, network_alphas=alphas, unet=pipe.unet, adapter_name=slot,
                                             metadata=metadata, _pipeline=pipe, hotswap=swap)
            except Exception:
                if swap:  # half swapped: the slot holds nothing usable; zero it until a LoRA is swapped in
                    for layer, _ in self._base.pop(slot, []):
                        _set_scaling(layer, slot, 0.0)
                raise
            if not swap:
                prepare_model_for_compiled_hotswap(pipe.unet, target_rank=self.target_rank, check_compiled="ignore")
                self.slots.append(slot)
                for layer in _lora_layers(pipe.unet):
                    layer.set_adapter(self.slots)
            self._base[slot] = [(layer, float(layer.scaling[slot])) for layer in _lora_layers(pipe.unet)
                                if slot in layer.scaling]
        else:
            slot = None
        text_name = adapter_name(choice.identity)
        for encoder, prefix in zip(self._text_encoders(), ("text_encoder", "text_encoder_2")):
            if any(key.startswith(prefix + ".") for key in state):
                pipe.load_lora_into_text_encoder(state, network_alphas=alphas, text_encoder=encoder, prefix=prefix,
                                                 adapter_name=text_name, metadata=metadata, _pipeline=pipe)
                self.text_adapters[choice.identity] = text_name
        return slot

    def _drop_text_adapter(self, identity: tuple) -> None:
        from diffusers.utils.peft_utils import delete_adapter_layers

        name = self.text_adapters.pop(identity, None)
        if name is None:
            return
        for encoder in self._text_encoders():
            if name in (getattr(encoder, "peft_config", None) or {}):
                delete_adapter_layers(encoder, name)


def _lora_layers(module: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [layer for layer in module.modules() if isinstance(layer, LoraLayer)]


def _set_scaling(layer: Any, slot: str, value: float) -> None:
    """Write a LoRA layer's scaling in place (a tensor the compiled graph reads), else as the float it is."""
    current = layer.scaling.get(slot)
    if hasattr(current, "fill_"):
        current.fill_(value)
    elif current is not None:
        layer.scaling[slot] = value
