"""Generation on a fixed set of threads, for torch.compile modes that record CUDA graphs.

PyTorch keeps the CUDA graphs of ``reduce-overhead`` and ``max-autotune`` per thread, each with
its own memory pool. Requests arrive on whichever HTTP worker thread took them, so each of those
threads would record its own graphs: the warm-up at start would help only its own thread, and
memory would grow with the thread count. Running every generation on one thread per slot keeps
one set of graphs per slot, recorded once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from pico.errors import Cancelled
from pico.pipelines.base import StepCallback

T = TypeVar("T")


class GenerationThreads:
    """Runs calls on at most ``count`` long-lived threads; the caller waits for the result."""

    def __init__(self, count: int):
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="pico-generate")

    def call(self, generate: Callable[[StepCallback], T], on_step: StepCallback | None) -> T:
        """``generate(step_callback)`` on a generation thread.

        If the caller stops waiting (Ctrl-C, a signal), the generation stops at its next step
        instead of running on unseen.
        """
        abandoned = threading.Event()

        def step(done: int, total: int) -> bool:
            if abandoned.is_set():
                raise Cancelled("The caller stopped waiting for this generation")
            return bool(on_step(done, total)) if on_step is not None else False

        try:  # submit inside: a Ctrl-C can land while submit returns, with the generation started
            return self._executor.submit(generate, step).result()
        except BaseException:
            abandoned.set()
            raise

    def close(self) -> None:
        """Let the threads end once their calls are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
