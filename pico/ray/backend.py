"""What the front door calls instead of a local Engine: the same methods, answered by the cluster.

The server calls ``generate_batch``, ``batch_key``, ``plan``, ``loaded_models``, ``is_loaded``, ``device``,
``load_times``, ``device_memory``, ``resolver``, ``warm_up``, ``leave_a_core_free`` and
``close``; the CLI also calls ``generate``. A generation is one streaming call to the engine
deployment (``deployment.py``): its steps drive ``on_step`` here, in the front door, so jobs,
progress, cancel and interrupt work as they do with a local engine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from pico.catalog.models import canonical
from pico.catalog.resolver import ModelPlan, ModelResolver
from pico.config import Settings
from pico.errors import Busy, Cancelled, ClusterUnavailable, PicoError, ReplicaFailed
from pico.ray.deployment import model_key
from pico.schemas.requests import GenerationRequest
from pico.schemas.results import Generation, PreviewCallback, StepCallback

if TYPE_CHECKING:
    from pico.jobs import Job
    from pico.ray.cluster import Cluster
    from pico.ray.jobs import ClusterJobs

log = logging.getLogger("pico")

POLL_SECONDS = 0.25  # how often a waiting call checks that its jobs still want it (cancelled, client left)
BOARD_TIMEOUT = 3.0  # seconds a board call may take before the cluster counts as unreachable
VIEW_SECONDS = 0.25  # replicas' state is read at most this often (health, status and metrics read it)
BACKPRESSURE_TRIES = 4  # Serve may refuse a burst that only looked queued while being assigned: try again
BACKPRESSURE_PAUSE = 0.02  # seconds, doubling
RETRY_AFTER_SECONDS = 2
REPLICA_DIED = ("The replica running this generation stopped before it finished (its process died); "
                "retry: another replica takes it")


class RayBackend:
    """An engine-like front for the cluster's engine replicas."""

    def __init__(self, settings: Settings, cluster: "Cluster"):
        self.settings = settings
        self.cluster = cluster
        self.resolver = ModelResolver.for_settings(settings)
        self.tracker: "ClusterJobs | None" = None  # the server's jobs, which say what each call is for
        self._engine = cluster.engine().options(stream=True, method_name="generate")
        self._board = cluster.board()
        self._view: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._view_lock = threading.Lock()

    # What the jobs and routes call.

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> Generation:
        """Generate the images of one request on a replica."""
        return self.generate_batch([request], on_step)[0]

    def generate_batch(self, requests: list[GenerationRequest], on_step: StepCallback | None = None,
                       on_preview: PreviewCallback | None = None) -> list[Generation]:
        """Run one engine call on the replica Serve picks (one holding the model when one is free).

        With ``on_preview``, the replica sends a preview every PREVIEW_SECONDS or so (not at every step).
        """
        if requests[0].loads_model():
            self.resolver.resolve(requests[0].model)  # a model this server may not load is refused here, at once
        jobs = self.tracker.current() if self.tracker is not None else []
        return RemoteCall(self, requests, jobs, on_step, on_preview).run()

    def batch_key(self, request: GenerationRequest) -> tuple | None:
        """What a request must share with others to run in one call (as Engine.batch_key); a long phrase runs
        alone, since counting its chunks needs a replica's tokenizers."""
        from pico.pipelines.registry import call_key  # torch-free: runners import torch only when they run

        return call_key(request, canonical(request.model), lambda: None)

    def plan(self, request: GenerationRequest, route: str) -> ModelPlan | None:
        """What a request's Model and LoRAs are, refused before queueing if they cannot run (as Engine.plan)."""
        return self.resolver.plan(request, route)

    @property
    def device(self) -> str:
        """The replicas' devices, for logs and the status route."""
        devices = sorted({r["device"] for r in self.replicas()})
        return f"ray ({', '.join(devices) or 'no replica yet'})"

    def is_loaded(self, model: str) -> bool:
        """True when some replica holds ``model``."""
        return any(canonical(model) in r["models"] for r in self.replicas())

    def loaded_models(self) -> list[str]:
        """The models resident on any replica."""
        return sorted({name for r in self.replicas() for name in r["loaded"]})

    def load_times(self) -> dict[str, float]:
        """Seconds each resident model took to load (the slowest replica's)."""
        times: dict[str, float] = {}
        for replica in self.replicas():
            for name, seconds in replica["load_times"].items():
                times[name] = max(seconds, times.get(name, 0.0))
        return times

    def device_memory(self) -> tuple[int, int] | None:
        """Device memory allocated on all CUDA replicas together (now, peak); None without CUDA."""
        memories = [r["memory"] for r in self.replicas() if r["memory"] is not None]
        if not memories:
            return None
        return sum(m[0] for m in memories), sum(m[1] for m in memories)

    def model_status(self) -> list[dict[str, Any]]:
        """What each resident model holds: per replica, in /api/v1/status's Replicas (none here)."""
        return []

    def replicas(self) -> list[dict[str, Any]]:
        """The replicas the board knows (each: id, node, pid, device, slots, busy, models...), read lately."""
        with self._view_lock:
            read, view = self._view
            if time.monotonic() - read < VIEW_SECONDS:
                return view
            view = self.board("replicas")
            self._view = (time.monotonic(), view)
            return view

    def warm_up(self, models: Any) -> None:
        """Nothing here: each replica loads and warms --preload models itself when it starts."""

    def leave_a_core_free(self) -> None:
        """Nothing here: the front door does not generate."""

    def close(self) -> None:
        """Stop publishing jobs and leave the cluster (shutting it down if this process started it)."""
        if self.tracker is not None:
            self.tracker.stop_publishing()
        self.cluster.close()

    # The board.

    def board(self, method: str, *args: Any) -> Any:
        """Call the board and wait; ClusterUnavailable when the cluster does not answer."""
        try:
            return getattr(self._board, method).remote(*args).result(timeout_s=BOARD_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - lost cluster, restarting board, timeout: all 503
            raise ClusterUnavailable(f"The Ray cluster does not answer: {_first_line(exc)}",
                                     retry_after=RETRY_AFTER_SECONDS) from exc

    def tell_board(self, method: str, *args: Any) -> None:
        """Call the board without waiting (a lost message is retried by its sender's next report)."""
        try:
            getattr(self._board, method).remote(*args)
        except Exception as exc:  # noqa: BLE001
            log.debug("board call %s failed: %s", method, exc)


class RemoteCall:
    """One generate call on a replica, streamed back: start, steps, result."""

    def __init__(self, backend: RayBackend, requests: list[GenerationRequest], jobs: list["Job"],
                 on_step: StepCallback | None, on_preview: PreviewCallback | None = None):
        self.backend = backend
        self.requests = requests
        self.jobs = jobs
        self.on_step = on_step
        self.on_preview = on_preview
        self.id = uuid.uuid4().hex
        self.interrupted = False
        self.replica = ""  # the replica that took the call
        self.done = 0  # the last step seen

    def run(self) -> list[Generation]:
        """Send the call (trying again when Serve's back-pressure may have been a burst), then follow it."""
        handle = self.backend._engine.options(multiplexed_model_id=model_key(self.requests[0]))
        for attempt in range(BACKPRESSURE_TRIES):
            stream = handle.remote(self.id, self.requests, self.on_preview is not None)
            items: queue.Queue = queue.Queue()
            threading.Thread(target=_read, args=(stream, items), name="pico-ray-call", daemon=True).start()
            try:
                return self._follow(stream, items)
            except _Refused:
                if attempt == BACKPRESSURE_TRIES - 1:
                    raise Busy("Every replica's slots are busy and the queue is full; retry shortly.",
                               retry_after=RETRY_AFTER_SECONDS) from None
                time.sleep(BACKPRESSURE_PAUSE * 2**attempt)
        raise AssertionError("unreachable")

    def _follow(self, stream: Any, items: queue.Queue) -> list[Generation]:
        finished = False
        try:
            while True:
                kind, *rest = self._next(stream, items)
                if kind == "step":
                    self._step(*rest)
                elif kind == "preview":
                    if self.on_preview is not None:
                        done, images = rest
                        self.on_preview(done, lambda: images)
                elif kind == "started":
                    self.replica = rest[0]["replica"]
                    if self.backend.tracker is not None:
                        self.backend.tracker.running(self.jobs)
                elif kind == "done":
                    finished = True
                    return rest[0]
                elif kind == "error":
                    finished = True
                    raise rest[0]
        except ReplicaFailed:
            if self.replica:  # gone: health and status must not wait for the board to notice
                self.backend.tell_board("forget_replica", self.replica)
            raise
        finally:
            if not finished:
                _cancel(stream)  # the replica stops at its next step

    def _next(self, stream: Any, items: queue.Queue) -> tuple:
        """The next item of the stream; meanwhile, give up as soon as every job of the call is gone."""
        while True:
            try:
                kind, value = items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                reasons = [job.gone() for job in self.jobs]
                if reasons and all(reasons):
                    raise Cancelled(reasons[0]) from None
                continue
            if kind == "item":
                return value
            raise _translate(value)

    def _step(self, done: int, total: int) -> None:
        """A step reached the replica; the steps since the last one it sent are counted here too."""
        if self.on_step is None:
            return
        first = self.done + 1 if self.done < done else done  # a new generation of the call starts at step 1
        self.done = done
        for step in range(first, done + 1):
            if self.on_step(step, total) and not self.interrupted:
                self.interrupted = True  # end denoising now, keeping the images: the replica must hear it
                self.backend.tell_board("signal_call", self.id, "interrupt")


class _Refused(Exception):
    """Serve's back-pressure refused the call."""


def _read(stream: Any, items: queue.Queue) -> None:
    """Iterate a stream on its own thread, so the caller can wait with a timeout."""
    try:
        for item in stream:
            items.put(("item", item))
        items.put(("raise", ReplicaFailed(REPLICA_DIED + " (its answer ended early)", retry_after=1)))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        items.put(("raise", exc))


def _cancel(stream: Any) -> None:
    """Cancel a call, wherever it is (queued, running, refused or over)."""
    try:
        stream.cancel()
    except Exception as exc:  # noqa: BLE001 - a refused or finished call has nothing left to cancel
        log.debug("cancel: %s", exc)


def _translate(exc: BaseException) -> BaseException:
    """Ray's and Serve's errors in PICO's terms."""
    from ray import exceptions as ray_errors
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, PicoError):
        return exc
    if isinstance(exc, BackPressureError):
        return _Refused()
    if isinstance(exc, ray_errors.TaskCancelledError):
        return Cancelled("The generation was cancelled")
    if isinstance(exc, ray_errors.RayActorError):
        return ReplicaFailed(REPLICA_DIED, retry_after=1, detail=_first_line(exc))
    if isinstance(exc, (ray_errors.RayError, ConnectionError, TimeoutError)):
        return ClusterUnavailable(f"The Ray cluster failed this generation: {_first_line(exc)}",
                                  retry_after=RETRY_AFTER_SECONDS)
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
