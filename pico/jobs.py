"""Jobs: every generation, whatever route started it, with an id, progress, cancel and interrupt.

Jobs run through the generation slots (``slots.py``) and, when batching is on, may share a
pipeline call with others (``batching.py``).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Protocol, Sequence

from pico.batching import Batcher
from pico.errors import Cancelled, NotFound
from pico.schemas.results import Generation
from pico.schemas.requests import GenerationRequest
from pico.schemas.responses import JobStatus
from pico.slots import Slots

log = logging.getLogger("pico")

KEEP_FINISHED = 500  # finished jobs remembered for the jobs route (running and waiting ones are all kept)
_WATCH_LOCK = threading.Lock()  # adding and removing watchers (rare); telling them reads a tuple without it


def preview_steps(n: int) -> Callable[[int, int], bool] | None:
    """A rule for a preview every ``n`` steps and at the last one (None for n <= 0: no previews).

    It counts steps since its last preview rather than multiples of ``n``: previews of a call on a
    Ray replica arrive every so often, not at every step, and a new generation starts again at step 1.
    """
    if n <= 0:
        return None
    last = 0

    def wants(done: int, total: int) -> bool:
        nonlocal last
        if done < last:
            last = 0
        if done - last >= n or done == total:
            last = done
            return True
        return False

    return wants


class Watcher(Protocol):
    """Someone following a job (an event stream): told of every change, offered every preview."""

    def changed(self) -> None:
        """The job's state, step or queue place changed; called on the thread that changed it, so it must be quick."""

    def offer(self, done: int, total: int, render: Callable[[], list[Any]]) -> None:
        """A preview at step ``done`` of ``total`` can be had from ``render()`` (rendered once for all who ask)."""


class JobState(str, Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Job:
    """One generation's life: queued, running (step of steps), then done, failed or cancelled."""

    id: str
    pipeline: str
    origin: str = "pico"  # the API that started it: pico, openai or a1111
    state: JobState = JobState.QUEUED
    step: int = 0
    steps: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    images: int = 0
    seeds: list[int] = field(default_factory=list)
    stopping: bool = False  # A1111's interrupt: end this generation now, and the call's later ones
    skip_part: int | None = None  # A1111's skip: end generation number ``skip_part`` now, go on with the next
    part: int = 0  # which of run_many's requests is running (A1111's job_no)
    batch_size: int = 1  # requests sharing this job's pipeline call (dynamic batching)
    # (first step's time, last step's time, steps between them): replaced whole, so a reader never sees half
    _timing: tuple[float, float, int] | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _alive: Callable[[], bool] = field(default=lambda: True, repr=False)
    wakeup: threading.Event = field(default_factory=threading.Event, repr=False)  # set on cancel
    image_offset: int = 0  # where this job's images start among its pipeline call's (dynamic batching)
    image_count: int = 1  # how many of the call's images are this job's
    preview_every: int = 0  # render a preview every N steps (0: never); set by whoever watches the job
    preview: tuple[int, list[Any]] | None = field(default=None, repr=False)  # the latest (step, PIL images)
    _poller_every: int = field(default=0, repr=False)
    _poller_wants: Callable[[int, int], bool] | None = field(default=None, repr=False)
    _watchers: tuple[Watcher, ...] = field(default=(), repr=False)  # replaced whole: read without a lock

    def on_step(self, done: int, total: int) -> bool:
        """Record progress; abort here if cancelled (or the client left); True to end denoising now (interrupt).

        The cancel is looked at before the step is shown: whoever saw step N and cancelled stops the job
        at step N+1, never at N by a race with this check.
        """
        stop: Cancelled | None = None
        if self._cancel.is_set():
            stop = Cancelled(f"Job {self.id} was cancelled at step {done} of {total}")
        elif not self._alive():
            self._cancel.set()
            stop = Cancelled(f"Job {self.id} stopped at step {done} of {total}: its client disconnected")
        now = time.perf_counter()
        timing = self._timing
        self._timing = (now, now, 0) if done == 1 or timing is None else (timing[0], now, timing[2] + 1)
        self.step, self.steps = done, total
        self.notify()
        if stop is not None:
            raise stop
        return self.interrupted

    def on_preview(self, done: int, render: Callable[[], list[Any]]) -> None:
        """Keep a preview of this job's images at step ``done`` when one is wanted then (render costs a little).

        ``preview_every`` is for pollers (A1111's progress keeps the latest); each watcher picks its own steps.
        The call's previews are rendered at most once, however many want them.
        """
        rendered: list[list[Any]] = []

        def mine() -> list[Any]:
            if not rendered:
                rendered.append(render()[self.image_offset:self.image_offset + self.image_count])
            return rendered[0]

        if self._poller_wants is None or self._poller_every != self.preview_every:
            self._poller_every, self._poller_wants = self.preview_every, preview_steps(self.preview_every)
        if self._poller_wants is not None and self._poller_wants(done, self.steps):
            self.preview = (done, mine())
        for watcher in self._watchers:
            watcher.offer(done, self.steps, mine)

    def watch(self, watcher: Watcher) -> None:
        """Tell ``watcher`` of every change of this job from now on, and offer it every preview."""
        with _WATCH_LOCK:
            self._watchers = (*self._watchers, watcher)

    def unwatch(self, watcher: Watcher) -> None:
        """Stop telling ``watcher``; a watcher that is not there is ignored."""
        with _WATCH_LOCK:
            self._watchers = tuple(w for w in self._watchers if w is not watcher)

    @property
    def watched(self) -> int:
        """How many watchers follow this job now."""
        return len(self._watchers)

    def notify(self) -> None:
        """Tell every watcher that something changed."""
        for watcher in self._watchers:
            watcher.changed()

    @property
    def interrupted(self) -> bool:
        """True while the running generation is to end now, keeping its images (interrupt or skip)."""
        return self.stopping or self.skip_part == self.part

    def interrupt(self) -> None:
        """End denoising at the next step, keep the images, and run none of the call's later generations."""
        self.stopping = True

    def skip(self) -> None:
        """End the running generation at its next step, keeping its images; the call goes on with the next."""
        self.skip_part = self.part

    @property
    def cancelled(self) -> bool:
        """True once a cancel was asked for."""
        return self._cancel.is_set()

    size = 1  # requests it stands for in the queue

    def gone(self) -> str | None:
        """Why this job no longer wants its slot (cancelled, client left), or None."""
        if self.cancelled:
            return f"Job {self.id} was cancelled"
        if not self._alive():
            self._cancel.set()
            return f"Job {self.id} gave up its place: its client disconnected"
        return None

    @property
    def steps_per_second(self) -> float | None:
        """Denoising steps per second of the latest generation (between its first and last step)."""
        timing = self._timing
        if timing is None or not timing[2] or timing[1] <= timing[0]:
            return None
        return timing[2] / (timing[1] - timing[0])

    @property
    def elapsed(self) -> float:
        """Seconds since the job started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def describe(self) -> JobStatus:
        """The job as the jobs route reports it."""
        rate = self.steps_per_second  # read once: a step may land between two reads
        return JobStatus(
            id=self.id, pipeline=self.pipeline, state=self.state.value, step=self.step, steps=self.steps,
            elapsed_seconds=round(self.elapsed, 3), images=self.images, seeds=list(self.seeds), error=self.error,
            batch_size=self.batch_size, steps_per_second=round(rate, 2) if rate else None,
        )


class Jobs:
    """The jobs of one server: admitted, run through the slots (or a batch), watched, cancelled.

    ``generate_batch(requests, on_step)`` makes one Generation per request in one call;
    ``batch_key(request)`` says which requests may share a call (None: never). With a batch
    window, requests with the same key that arrive within it run together, up to ``max_images``
    images in one call. Only admitted requests become jobs; running and waiting jobs are kept
    until they end, then the last ``KEEP_FINISHED`` are remembered for the jobs route.
    """

    def __init__(self, generate_batch: Callable[..., list[Generation]], slots: int = 1, queue: int = 0,
                 batch_window: float = 0.0, max_images: int = 1,
                 batch_key: Callable[[GenerationRequest], tuple | None] = lambda _request: None):
        self._generate_batch = generate_batch
        self.slots = Slots(slots, queue)
        self._batch_key = batch_key
        self._batcher = Batcher(self.slots, batch_window, max_images, generate_batch, self.start, self.settle) \
            if batch_window > 0 and max_images > 1 else None
        self._active: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.listeners: list[Callable[[Job, Generation | None], None]] = []  # told of each generation's end

    def run(self, pipeline: str, request: GenerationRequest, on_start: Callable[[Job], None] | None = None,
            alive: Callable[[], bool] | None = None, origin: str = "pico") -> tuple[Job, Generation]:
        """Run one request as a job: wait for a slot (or raise Busy), generate, release the slot.

        ``alive`` says whether the client still waits; a job whose client left gives up its
        place in the queue, or stops at its next step. With batching on, the request may share
        its pipeline call with others that arrive within the batch window.
        """
        key = self._batch_key(request) if self._batcher is not None else None
        if key is None:
            job, (generation,) = self.run_many(pipeline, [request], on_start, alive, origin=origin)
            return job, generation
        job = self._new_job(pipeline, origin, alive)
        try:
            return job, self._batcher.run(key, job, request, admitted=lambda: self._admitted(job, on_start))
        except BaseException as exc:
            self.settle(job, exc)
            raise

    def run_many(self, pipeline: str, requests: Sequence[GenerationRequest],
                 on_start: Callable[[Job], None] | None = None, alive: Callable[[], bool] | None = None,
                 origin: str = "pico") -> tuple[Job, list[Generation]]:
        """Run requests one after another as one job holding one slot (A1111's n_iter batches).

        A skip ends only the generation it hit; an interrupt also ends the ones after it, even
        when it lands between two of them.
        """
        job = self._new_job(pipeline, origin, alive)
        try:
            has_slot = self.slots.admit(job)
            self._admitted(job, on_start)
            if not has_slot:
                self.slots.wait(job)
        except BaseException as exc:
            self.settle(job, exc)
            raise
        generations: list[Generation] = []
        try:
            self.start(job)
            for part, request in enumerate(requests):
                if job.stopping and generations:
                    break
                job.part, job.image_count = part, request.total
                (generation,) = self._generate_batch([request], on_step=job.on_step, on_preview=job.on_preview)
                generations.append(generation)
        except BaseException as exc:
            self.settle(job, exc)
            raise
        finally:
            self.slots.release()
        self.settle(job, None, generations)
        return job, generations

    def start(self, job: Job, batch_size: int = 1) -> None:
        """Mark a job as running (it holds a slot now), unless it has already ended."""
        with self._lock:
            if job.finished is None:
                job.state, job.started, job.batch_size = JobState.RUNNING, time.time(), batch_size
        job.notify()

    def settle(self, job: Job, error: BaseException | None, generations: Sequence[Generation] = ()) -> None:
        """Record how a job ended (done, cancelled or failed) and tell the listeners; later calls do nothing."""
        with self._lock:
            if job.finished is not None:
                return
            if error is None:
                job.state = JobState.DONE
                for generation in generations:
                    job.images += len(generation.images)
                    job.seeds += [m["Seed"] for m in generation.metadata]
            elif isinstance(error, Cancelled):
                job.state, job.error = JobState.CANCELLED, error.message
            else:
                job.state, job.error = JobState.FAILED, getattr(error, "code", None) or type(error).__name__
            job.finished = time.time()
            job.preview = None  # finished jobs are remembered; their previews need not be
            if self._active.pop(job.id, None) is not None:
                self._finished[job.id] = job
                while len(self._finished) > KEEP_FINISHED:
                    self._finished.popitem(last=False)
        job.notify()
        for listener in self.listeners:
            for generation in generations or [None]:
                try:
                    listener(job, generation)
                except Exception:  # noqa: BLE001 - an observer must never fail a generation
                    log.exception("job listener failed")

    def get(self, job_id: str) -> Job:
        """A job by id; NotFound when unknown or long forgotten."""
        with self._lock:
            job = self._active.get(job_id) or self._finished.get(job_id)
        if job is None:
            raise NotFound(f"No job {job_id!r}; finished jobs are kept for the last {KEEP_FINISHED} generations")
        return job

    def refresh(self, job: Job) -> bool:
        """Bring a copy of a job run elsewhere up to date; False when it is this server's own (always so here)."""
        return False

    def position(self, job: Job) -> int:
        """A waiting job's place in the queue (1: next to run), counting the requests ahead; 0 when not waiting."""
        if job.state != JobState.QUEUED or job.finished is not None:
            return 0
        # A waiter is the job itself, or a forming batch that holds it among its members.
        return self.slots.place(
            lambda waiter: waiter is job or any(member is job for member, _ in getattr(waiter, "members", ())))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one leaves the queue at once, a running one stops at its next step."""
        job = self.get(job_id)
        job._cancel.set()
        if job.state == JobState.QUEUED:
            self.settle(job, Cancelled(f"Job {job.id} was cancelled while it waited"))
        job.wakeup.set()
        self.slots.wake()
        return job

    def cancel_running(self) -> int:
        """Cancel every running job (each stops at its next step); returns how many."""
        running = [j for j in self.active() if j.state == JobState.RUNNING]
        for job in running:
            job._cancel.set()
            job.wakeup.set()
        return len(running)

    def interrupt_running(self, origin: str) -> list[Job]:
        """Interrupt the running jobs ``origin`` started: each ends denoising now, keeping its images, and stops."""
        running = [j for j in self.active() if j.state == JobState.RUNNING and j.origin == origin]
        for job in running:
            job.interrupt()
        return running

    def skip_running(self, origin: str) -> list[Job]:
        """Skip the running generation of the jobs ``origin`` started: each goes on with its next one."""
        running = [j for j in self.active() if j.state == JobState.RUNNING and j.origin == origin]
        for job in running:
            job.skip()
        return running

    def active(self) -> list[Job]:
        """Jobs running or waiting now, oldest first."""
        with self._lock:
            return list(self._active.values())

    def known(self) -> int:
        """Jobs the registry holds: the active ones and the remembered finished ones."""
        with self._lock:
            return len(self._active) + len(self._finished)

    @property
    def busy(self) -> bool:
        """True while every slot is taken."""
        return self.slots.busy

    def counts(self) -> dict[str, int]:
        """Slots in use and queue length, read together."""
        running, waiting = self.slots.counts()
        return {"SlotsInUse": running, "Slots": self.slots.slots, "QueueLength": waiting,
                "QueueLimit": self.slots.queue_limit}

    def close(self) -> None:
        """Refuse new jobs and turn away the waiting ones; running jobs go on to the end."""
        self.slots.close()

    def _new_job(self, pipeline: str, origin: str, alive: Callable[[], bool] | None) -> Job:
        job = Job(id=f"{next(self._counter):06d}-{secrets.token_hex(4)}", pipeline=pipeline, origin=origin)
        if alive is not None:
            job._alive = alive
        return job

    def _admitted(self, job: Job, on_start: Callable[[Job], None] | None) -> None:
        """Register a job once the slots took it (refused requests never become jobs), and announce it."""
        with self._lock:
            if job.finished is None:
                self._active[job.id] = job
        if on_start is not None:
            on_start(job)
