"""The Serve deployment: one replica is one PICO Engine with ``--threadsmax`` slots and its own model cache.

Requests are routed by Serve's model multiplexing, keyed by the model id (aliases followed),
so a model's requests go to a replica that holds it warm while one is free. ``generate``
streams: first ``("started", replica)``, then ``("step", done, total)`` per denoising step
(and, when the call asks for them, ``("preview", done, images)`` every PREVIEW_SECONDS or so),
then ``("done", generations)`` or ``("error", PicoError)``. A front door that gives up cancels
the stream (Serve cancels the call; the generation stops at its next step); an interrupt
(end denoising now, keep the images) reaches the replica through the board, which it polls
while it generates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable

from pico.catalog.models import canonical
from pico.config import Settings
from pico.errors import Cancelled, InternalError, PicoError
from pico.ray.board import Board
from pico.schemas.requests import GenerationRequest

log = logging.getLogger("pico")

REPLICA = "PicoEngine"
BOARD = "PicoBoard"
POLL_SECONDS = 0.1  # how often a replica that generates collects its signals from the board
HEARTBEAT_SECONDS = 1.0  # how often an idle replica tells the board it is there
STEP_INTERVAL = 0.05  # seconds: steps stream back at most this often (each item crosses processes)
PREVIEW_SECONDS = 0.25  # previews (small images made from the latents) stream back at most this often
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


class Call:
    """One generate call on a replica: its cancel flag (set when the caller gave up) and interrupt flag."""

    def __init__(self, call_id: str):
        self.id = call_id
        self.cancelled = threading.Event()
        self.interrupted = False


class ReplicaBase:
    """A PICO engine as a Serve replica. ``build_app`` adds the multiplexed ``model`` method."""

    def __init__(self, settings: Settings, board: Any, cpus: int):
        from ray import serve

        _log_to_stderr(settings.verbose)
        if settings.demo:
            from pico.pipelines.tiny import write_tiny_models

            write_tiny_models(settings.models_root)  # this host may not have them yet
        self.engine = _counting_engine(settings)
        if self.engine.device.type == "cpu":
            import torch

            torch.set_num_threads(max(1, cpus))  # the replica's share: replicas must not fight over cores
        self.board = board
        self.id = serve.get_replica_context().replica_id.unique_id
        self.started = time.time()
        self.slots = settings.threadsmax
        self.busy = 0
        self.calls: dict[str, Call] = {}
        self._lock = threading.Lock()  # busy and calls change on generation threads and the event loop
        self._executor = ThreadPoolExecutor(settings.threadsmax, thread_name_prefix="pico-generate")
        self._wake = threading.Event()
        self._idle = True  # the reporter has no call to watch and sleeps HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self.engine.warm_up(settings.preload)
        threading.Thread(target=self._report_forever, name="pico-report", daemon=True).start()

    def admit_model(self, model_id: str) -> str:
        """Serve's multiplexing asks for a model: refuse one this server may not load, else take it.

        The name is a request's Model: an id (allowed or not) or a checkpoint file's name in the folders.
        """
        self.engine.resolver.resolve(model_id)
        return model_id  # the engine loads it on first use, into its own cache of the same size

    async def generate(self, call_id: str, requests: list[GenerationRequest],
                       previews: bool = False) -> AsyncIterator[tuple]:
        """Run one engine call; stream its start, its steps, then its result (see the module docstring)."""
        from ray import serve

        model = serve.get_multiplexed_model_id()
        try:
            if model:
                await self.model(model)  # type: ignore[attr-defined]  # registers it with Serve's router
        except PicoError as exc:
            yield ("error", exc)
            return
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        call = Call(call_id)

        def send(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the replica is shutting down: nobody listens any more
                pass

        sent, previewed, steps = [0.0], [0.0], [0]

        def on_step(done: int, total: int) -> bool:
            now = time.monotonic()
            steps[0] = total
            if now - sent[0] >= STEP_INTERVAL or done in (1, total):  # the caller counts the steps in between
                sent[0] = now
                send(("step", done, total))
            if call.cancelled.is_set():
                raise Cancelled(f"Generation stopped at step {done} of {total}: its caller gave up")
            return call.interrupted

        def on_preview(done: int, render: Callable[[], list]) -> None:
            now = time.monotonic()
            if now - previewed[0] >= PREVIEW_SECONDS or done == steps[0]:
                previewed[0] = now
                send(("preview", done, render()))

        def work() -> None:
            try:
                send(("done", self.engine.generate_batch(requests, on_step=on_step,
                                                         on_preview=on_preview if previews else None)))
            except PicoError as exc:
                send(("error", exc))
            except Exception as exc:  # noqa: BLE001 - reported to the caller, logged here with its traceback
                log.exception("generation failed")
                send(("error", InternalError(f"{type(exc).__name__}: {exc}")))
            finally:
                with self._lock:
                    self.busy -= 1
                    self.calls.pop(call_id, None)
                # the reporter, polling while calls run, tells the board within POLL_SECONDS

        with self._lock:
            self.busy += 1
            self.calls[call_id] = call
        if self._idle:  # the reporter sleeps long while nothing runs: report this call now
            self._wake.set()
        loop.run_in_executor(self._executor, work)  # from here, work() alone gives the slot back
        try:
            yield ("started", {"replica": self.id, "node": _node()})
            while True:
                item = await items.get()
                yield item
                if item[0] in ("done", "error"):
                    return
        except BaseException:  # the caller cancelled (CancelledError) or went away: stop at the next step
            call.cancelled.set()
            raise

    def info(self) -> dict[str, Any]:
        """What the board and /api/v1/status show of this replica."""
        engine = self.engine
        with self._lock:
            busy = self.busy
        return {
            "id": self.id, "node": _node(), "pid": os.getpid(), "device": str(engine.device), "started": self.started,
            "slots": self.slots, "busy": busy, "models": sorted({key.model_id for key in engine.cache.keys()}),
            "loaded": engine.loaded_models(), "loads": dict(engine.loads), "load_times": engine.load_times(),
            "memory": engine.device_memory(),
        }

    def _report_forever(self) -> None:
        """Tell the board how this replica is, and collect the signals for its running calls."""
        while not self._stop.is_set():
            running: list[str] = []
            try:
                with self._lock:
                    running = list(self.calls)
                signals = self.board.report_replica.remote(self.id, self.info(), running).result(timeout_s=5)
                for call_id, kinds in signals.items():
                    call = self.calls.get(call_id)
                    if call is not None and "interrupt" in kinds:
                        call.interrupted = True
            except Exception as exc:  # noqa: BLE001 - the board restarts with its deployment; keep trying
                log.debug("cannot reach the board: %s", exc)
            self._idle = not running and not self.calls
            self._wake.wait(HEARTBEAT_SECONDS if self._idle else POLL_SECONDS)
            self._wake.clear()

    def __del__(self) -> None:
        """Serve stops this replica: leave the board."""
        if not hasattr(self, "_stop"):  # the constructor failed
            return
        self._stop.set()
        try:
            self.board.forget_replica.remote(self.id)
        except Exception:  # noqa: BLE001 - the board may be gone first
            pass
        self._executor.shutdown(wait=False)


def build_app(settings: Settings, resources: dict[str, float]) -> Any:
    """The Serve application: the engine deployment (the ingress) bound to one board."""
    from ray import serve

    board = serve.deployment(Board, name=BOARD, num_replicas=1, max_ongoing_requests=1000,
                             ray_actor_options={"num_cpus": 0}, logging_config=QUIET_LOGS).bind()

    class PicoEngine(ReplicaBase):
        @serve.multiplexed(max_num_models_per_replica=settings.max_models)
        async def model(self, model_id: str) -> str:
            """The model a request names (Serve keeps the last --max-models per replica, as the engine does)."""
            return self.admit_model(model_id)

    cpus = int(resources.get("num_cpus", 1)) if not resources.get("num_gpus") else 0
    return serve.deployment(PicoEngine, **engine_options(settings, resources)).bind(settings, board, cpus)


def engine_options(settings: Settings, resources: dict[str, float]) -> dict[str, Any]:
    """The engine deployment's Serve options: slots, waiting places, a fixed count or autoscaling."""
    options: dict[str, Any] = {
        "name": REPLICA, "max_ongoing_requests": settings.threadsmax,
        # Serve counts a request being assigned as queued, and refuses 0: --queue 0 becomes 1.
        "max_queued_requests": max(1, settings.queue), "ray_actor_options": resources,
        "logging_config": QUIET_LOGS,
    }
    if settings.max_replicas:
        options["autoscaling_config"] = {"min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas,
                                         "target_ongoing_requests": settings.threadsmax}
    else:
        options["num_replicas"] = settings.replicas
    return options


def model_key(request: GenerationRequest) -> str:
    """The multiplexed model id of a request: its model, aliases followed ("" when it runs none)."""
    return canonical(request.model) if request.loads_model() else ""


def _counting_engine(settings: Settings) -> Any:
    """An Engine that counts its model loads (what the board reports, and the affinity tests check)."""
    from pico.pipelines.engine import Engine

    class CountingEngine(Engine):
        def __init__(self, settings: Settings):
            super().__init__(settings)
            self.loads: Counter[str] = Counter()

        def _read(self, key: Any) -> Any:
            loaded = super()._read(key)
            self.loads[key.model_id] += 1
            return loaded

    return CountingEngine(settings)


def _node() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _log_to_stderr(verbose: bool) -> None:
    root = logging.getLogger("pico")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
