"""Fault injection for tests: make a generation fail, hold or crawl, or a model fail to load.

Switched on only by the ``faults`` setting (``PICO_FAULTS``), which production never sets.
Spec: comma-separated

- ``oom:N``: the next N generations run out of memory at their first step;
- ``error:N``: the next N fail with an unexpected exception;
- ``load:GLOB``: models whose id matches fail to load as if corrupt;
- ``loadoom:GLOB``: models whose id matches run the device out of memory as they are moved onto it;
- ``hold:PATH``: while the file PATH exists, every generation waits at each step (after the step
  is counted, so its job reports it); deleting the file releases them. Any process can create and
  delete a file, so a test holds a live server's generation open and releases it when it chooses.
  A file holding a number N holds each generation from its step N on instead: writing N into it
  moves a held generation on to step N, where it waits again (the server only reads the file);
- ``slow:SECONDS``: each step takes at least SECONDS more, so a generation lasts at least
  steps x SECONDS on any machine.
"""

from __future__ import annotations

import fnmatch
import threading
import time

from pico.errors import InvalidRequest

HOLD_POLL_SECONDS = 0.01


class Faults:
    """The faults still to inject; thread-safe."""

    def __init__(self, spec: str = ""):
        self._lock = threading.Lock()
        self._counts = {"oom": 0, "error": 0}
        self._load_patterns: list[str] = []
        self._place_patterns: list[str] = []
        self._holds: list[str] = []
        self._slow = 0.0
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kind, _, arg = part.partition(":")
            if kind in self._counts and arg.isdigit():
                self._counts[kind] += int(arg)
            elif kind == "load" and arg:
                self._load_patterns.append(arg)
            elif kind == "loadoom" and arg:
                self._place_patterns.append(arg)
            elif kind == "hold" and arg:
                self._holds.append(arg)
            elif kind == "slow" and _is_seconds(arg):
                self._slow += float(arg)
            else:
                raise InvalidRequest(f"PICO_FAULTS has an unknown fault {part!r}; use oom:N, error:N, load:GLOB, "
                                     "loadoom:GLOB, hold:PATH or slow:SECONDS", field="PICO_FAULTS")

    @property
    def active(self) -> bool:
        """True when any fault is still to come."""
        return bool(self._load_patterns or self._place_patterns or self._holds or self._slow) or any(self._counts.values())

    def _take(self, kind: str) -> bool:
        with self._lock:
            if self._counts[kind] > 0:
                self._counts[kind] -= 1
                return True
            return False

    def at_step(self, step: int | None = None) -> None:
        """Called at each denoising step (``step``: the steps done): raise the next pending generation fault,
        hold, or slow the step."""
        import torch

        if self._take("oom"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)")
        if self._take("error"):
            raise RuntimeError("injected fault: the pipeline failed")
        if self._slow:
            time.sleep(self._slow)
        while any(_holds_at(path, step) for path in self._holds):
            time.sleep(HOLD_POLL_SECONDS)

    def at_load(self, model_id: str) -> None:
        """Called before a model loads: fail it if its id matches a load fault."""
        if any(fnmatch.fnmatchcase(model_id, p) for p in self._load_patterns):
            raise OSError(f"injected fault: {model_id} has a corrupt safetensors file")

    def at_place(self, model_id: str) -> None:
        """Called as a read model goes onto the device: run out of memory if its id matches a loadoom fault."""
        import torch

        if any(fnmatch.fnmatchcase(model_id, p) for p in self._place_patterns):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (injected fault)")


def _holds_at(path: str, step: int | None) -> bool:
    """True while the hold file ``path`` holds a generation at ``step`` (None: any step)."""
    try:
        with open(path) as file:
            text = file.read().strip()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there but unreadable now: keep holding, look again
    return not text.isdigit() or step is None or step >= int(text)


def _is_seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False
