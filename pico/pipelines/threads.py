"""Generation on a fixed set of threads, for torch.compile modes that record CUDA graphs.

PyTorch keeps the CUDA graphs of ``reduce-overhead`` and ``max-autotune`` per thread, each with
its own memory pool. Requests arrive on whichever HTTP worker thread took them, so each of those
threads would record its own graphs: the warm-up at start would help only its own thread, and
memory would grow with the thread count. Running every generation on one thread per slot keeps
one set of graphs per slot, recorded once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import TypeVar

from pico.errors import Cancelled
from pico.schemas.results import StepCallback

T = TypeVar("T")

# The caller waits in slices this long. Python runs signal handlers only on the main thread, and
# only between bytecodes: a Ctrl-C that lands just before the caller blocks, or on another thread
# (the kernel may hand a process-wide SIGINT to any thread), would otherwise go unseen until the
# generation ends.
WAKE_EVERY = 0.05


class GenerationThreads:
    """Runs calls on ``count`` long-lived threads; the caller waits for the result.

    Daemon threads, unlike ThreadPoolExecutor's: a CLI stopped by Ctrl-C during a model load or
    a compile exits at once instead of waiting for it to finish.
    """

    def __init__(self, count: int):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"pico-generate-{index}", daemon=True)
                         for index in range(count)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, generate, step = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(generate(step))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)

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

        future: Future = Future()
        try:  # put inside: a Ctrl-C can land just after the generation was handed over
            self._tasks.put((future, generate, step))
            self._wait(future)
            return future.result()
        except BaseException:
            abandoned.set()
            future.cancel()  # not started yet: it never will
            raise

    def _wait(self, future: Future) -> None:
        """Block until ``future`` is done, waking every WAKE_EVERY seconds so pending signal handlers run."""
        while not future.done():
            wait([future], timeout=WAKE_EVERY)

    def close(self, wait_seconds: float = 0) -> bool:
        """Let the threads end once their calls are done; wait up to ``wait_seconds``. True when all ended."""
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(wait_seconds)
        return not any(thread.is_alive() for thread in self._threads)
