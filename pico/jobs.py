"""Generation slots, the waiting queue, and jobs with ids, progress and cancel.

Every generation, whatever route or command started it, is a :class:`Job`. At most
``slots`` jobs run at once; up to ``queue`` more wait their turn in arrival order; beyond
that a new job is refused with :class:`Busy` at once, as the original PICO did.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

from pico.errors import Busy, Cancelled, NotFound
from pico.pipelines.base import Generation
from pico.schemas.requests import GenerationRequest
from pico.schemas.responses import JobStatus

log = logging.getLogger("pico")

KEEP_FINISHED = 500  # finished jobs remembered for the jobs route
RETRY_AFTER_SECONDS = 2
QUEUE_POLL_SECONDS = 0.5  # how often a queued job checks that its client is still there


class JobState(str, Enum):
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
    state: JobState = JobState.QUEUED
    step: int = 0
    steps: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    images: int = 0
    seeds: list[int] = field(default_factory=list)
    interrupted: bool = False
    part: int = 0  # which of run_many's requests is running (A1111's job_no)
    batch_size: int = 1  # requests sharing this job's pipeline call (dynamic batching)
    _first_step_at: float | None = field(default=None, repr=False)
    _last_step_at: float | None = field(default=None, repr=False)
    _steps_timed: int = field(default=0, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _alive: Callable[[], bool] = field(default=lambda: True, repr=False)

    def on_step(self, done: int, total: int) -> bool:
        """Record progress; abort here if cancelled (or the client left); True to stop early if interrupted."""
        now = time.perf_counter()
        if done == 1 or self._first_step_at is None:
            self._first_step_at, self._steps_timed = now, 0
        else:
            self._steps_timed += 1
        self._last_step_at = now
        self.step, self.steps = done, total
        if self._cancel.is_set():
            raise Cancelled(f"Job {self.id} was cancelled at step {done} of {total}")
        if not self._alive():
            self._cancel.set()
            raise Cancelled(f"Job {self.id} stopped at step {done} of {total}: its client disconnected")
        return self.interrupted

    def interrupt(self) -> None:
        """Stop denoising at the next step and keep the images as they are (A1111's interrupt)."""
        self.interrupted = True

    @property
    def cancelled(self) -> bool:
        """True once a cancel was asked for."""
        return self._cancel.is_set()

    @property
    def steps_per_second(self) -> float | None:
        """Denoising steps per second of the latest generation (between its first and last step)."""
        if not self._steps_timed or self._last_step_at == self._first_step_at:
            return None
        return self._steps_timed / (self._last_step_at - self._first_step_at)

    @property
    def elapsed(self) -> float:
        """Seconds since the job started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def describe(self) -> JobStatus:
        """The job as the jobs route reports it."""
        return JobStatus(
            id=self.id, pipeline=self.pipeline, state=self.state.value, step=self.step, steps=self.steps,
            elapsed_seconds=round(self.elapsed, 3), images=self.images, seeds=self.seeds, error=self.error,
            batch_size=self.batch_size,
            steps_per_second=round(self.steps_per_second, 2) if self.steps_per_second else None,
        )


@dataclass
class _Batch:
    """Requests gathered in the batch window, to run as one pipeline call in one slot."""

    members: list[tuple[Job, GenerationRequest]] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    results: dict[str, Generation] = field(default_factory=dict)
    error: BaseException | None = None


class Jobs:
    """Runs generations through a fixed number of slots, with an optional FIFO queue and batching.

    ``generate_batch(requests, on_step)`` makes one Generation per request in one call;
    ``batch_key(request)`` says which requests may share a call (None: never). With a batch
    window, requests with the same key that arrive within it run together, up to ``max_batch``.
    """

    def __init__(self, generate_batch: Callable[..., list[Generation]], slots: int = 1, queue: int = 0,
                 batch_window: float = 0.0, max_batch: int = 1,
                 batch_key: Callable[[GenerationRequest], tuple | None] = lambda _request: None):
        self._generate_batch = generate_batch
        self.slots = slots
        self.queue_limit = queue
        self.batch_window = batch_window
        self.max_batch = max_batch
        self._batch_key = batch_key
        self._forming: dict[tuple, _Batch] = {}
        self._running = 0
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._closed = False
        self._counter = itertools.count(1)
        self.listeners: list[Callable[[Job, Generation | None], None]] = []  # told when a job ends

    def run(self, pipeline: str, request: GenerationRequest, on_start: Callable[[Job], None] | None = None,
            alive: Callable[[], bool] | None = None) -> tuple[Job, Generation]:
        """Run one request as a job: wait for a slot (or raise Busy), generate, release the slot.

        ``alive`` says whether the client still waits; a job whose client left gives up its
        place in the queue, or stops at its next step. With batching on, the request may share
        its pipeline call with others that arrive within the batch window.
        """
        key = self._batch_key(request) if self.batch_window > 0 and self.max_batch > 1 else None
        if key is not None:
            return self._run_batched(key, pipeline, request, on_start, alive)
        job, (generation,) = self.run_many(pipeline, [request], on_start, alive)
        return job, generation

    def _run_batched(self, key: tuple, pipeline: str, request: GenerationRequest,
                     on_start: Callable[[Job], None] | None,
                     alive: Callable[[], bool] | None) -> tuple[Job, Generation]:
        job = self._new_job(pipeline)
        if alive is not None:
            job._alive = alive
        if on_start is not None:
            on_start(job)
        with self._cond:
            batch = self._forming.get(key)
            leader = batch is None
            if leader:
                batch = self._forming[key] = _Batch()
            batch.members.append((job, request))
            if len(batch.members) >= self.max_batch:
                del self._forming[key]
                batch.full.set()
        if leader:
            batch.full.wait(self.batch_window)
            with self._cond:
                if self._forming.get(key) is batch:
                    del self._forming[key]
            try:
                self._run_batch(batch)
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        if job.id not in batch.results:
            raise Cancelled(f"Job {job.id} was cancelled")
        return job, batch.results[job.id]

    def _run_batch(self, batch: _Batch) -> None:
        """Run a gathered batch: its first job stands in the queue for all of them."""
        jobs = [job for job, _ in batch.members]
        stand_in, own_check = jobs[0], jobs[0]._alive
        checks = [job._alive for job in jobs]
        stand_in._alive = lambda: any(check() for check in checks)  # the batch waits while anyone does
        try:
            self._acquire(stand_in)
        except BaseException as exc:
            batch.error = exc
            for job in jobs:
                job.state, job.error, job.finished = JobState.FAILED, getattr(exc, "code", None), time.time()
            return
        stand_in._alive = own_check
        try:
            for job in jobs:
                job.state, job.started, job.batch_size = JobState.RUNNING, time.time(), len(jobs)
            generations = self._generate_batch([request for _, request in batch.members],
                                               on_step=lambda done, total: _step_all(jobs, done, total))
            for job, generation in zip(jobs, generations):
                if job.state == JobState.CANCELLED:
                    continue
                batch.results[job.id] = generation
                job.state, job.images = JobState.DONE, len(generation.images)
                job.seeds = [m["Seed"] for m in generation.metadata]
        except BaseException as exc:
            batch.error = exc
            for job in jobs:
                job.state = JobState.CANCELLED if isinstance(exc, Cancelled) else JobState.FAILED
                job.error = getattr(exc, "message", None) or type(exc).__name__
        finally:
            self._release()
            for job in jobs:
                job.finished = time.time()
                self._tell_listeners(job, [batch.results.get(job.id)])

    def run_many(self, pipeline: str, requests: Sequence[GenerationRequest],
                 on_start: Callable[[Job], None] | None = None, alive: Callable[[], bool] | None = None,
                 go_on: Callable[[Job], bool] = lambda _job: True) -> tuple[Job, list[Generation]]:
        """Run requests one after another as one job holding one slot (A1111's n_iter batches).

        After each generation ``go_on(job)`` decides whether the next one runs; an interrupt
        ends only the generation it hit.
        """
        job = self._new_job(pipeline)
        if alive is not None:
            job._alive = alive
        if on_start is not None:
            on_start(job)
        self._acquire(job)
        generations: list[Generation] = []
        try:
            job.state, job.started = JobState.RUNNING, time.time()
            for job.part, request in enumerate(requests):
                (generation,) = self._generate_batch([request], on_step=job.on_step)
                generations.append(generation)
                job.images += len(generation.images)
                job.seeds += [m["Seed"] for m in generation.metadata]
                if not go_on(job):
                    break
                job.interrupted = False
            job.state = JobState.DONE
            return job, generations
        except Cancelled:
            job.state = JobState.CANCELLED
            raise
        except BaseException as exc:
            job.state, job.error = JobState.FAILED, getattr(exc, "message", None) or type(exc).__name__
            raise
        finally:
            job.finished = time.time()
            self._release()
            self._tell_listeners(job, generations if job.state == JobState.DONE else [None])

    def _tell_listeners(self, job: Job, generations: list[Generation | None]) -> None:
        for listener in self.listeners:
            for generation in generations:
                try:
                    listener(job, generation)
                except Exception:  # noqa: BLE001 - an observer must never fail a generation
                    log.exception("job listener failed")

    def get(self, job_id: str) -> Job:
        """A job by id; NotFound when unknown or long forgotten."""
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No job {job_id!r}; jobs are kept for the last {KEEP_FINISHED} generations")
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one leaves the queue, a running one stops at its next step."""
        job = self.get(job_id)
        with self._cond:
            job._cancel.set()
            if job in self._waiting:
                self._waiting.remove(job)
                job.state, job.finished = JobState.CANCELLED, time.time()
            self._cond.notify_all()
        return job

    def cancel_running(self) -> int:
        """Cancel every running job (each stops at its next step); returns how many."""
        running = [j for j in self.active() if j.state == JobState.RUNNING]
        for job in running:
            job._cancel.set()
        return len(running)

    def interrupt_running(self) -> int:
        """Interrupt every running job: each ends denoising at its next step and keeps its images."""
        running = [j for j in self.active() if j.state == JobState.RUNNING]
        for job in running:
            job.interrupt()
        return len(running)

    def active(self) -> list[Job]:
        """Jobs running or waiting now, oldest first."""
        return [j for j in list(self._jobs.values()) if j.state in (JobState.QUEUED, JobState.RUNNING)]

    @property
    def busy(self) -> bool:
        """True while every slot is taken."""
        return self._running >= self.slots

    def counts(self) -> dict[str, int]:
        """Slots in use and queue length, read together."""
        with self._cond:
            return {"SlotsInUse": self._running, "Slots": self.slots,
                    "QueueLength": len(self._waiting), "QueueLimit": self.queue_limit}

    def close(self) -> None:
        """Refuse new jobs and turn away the waiting ones; running jobs go on to the end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs or waits; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running or self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _new_job(self, pipeline: str) -> Job:
        job = Job(id=f"{next(self._counter):06d}-{secrets.token_hex(4)}", pipeline=pipeline)
        with self._cond:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_FINISHED:
                oldest = next(iter(self._jobs.values()))
                if oldest.state in (JobState.QUEUED, JobState.RUNNING):
                    break
                self._jobs.popitem(last=False)
        return job

    def _acquire(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                self._refuse(job, "The server is shutting down; retry on another instance.")
            if self._running < self.slots and not self._waiting:
                self._running += 1
                return
            if len(self._waiting) >= self.queue_limit:
                queue = f" and the queue is full ({self.queue_limit} waiting)" if self.queue_limit else ""
                self._refuse(job, f"All {self.slots} generation slot(s) are busy{queue}; retry shortly.")
            self._waiting.append(job)
            while not (self._waiting and self._waiting[0] is job and self._running < self.slots):
                if job.cancelled:
                    raise Cancelled(f"Job {job.id} was cancelled while queued")
                if not job._alive():
                    self._waiting.remove(job)
                    job.state, job.finished = JobState.CANCELLED, time.time()
                    self._cond.notify_all()
                    raise Cancelled(f"Job {job.id} left the queue: its client disconnected")
                if self._closed:
                    self._waiting.remove(job)
                    self._refuse(job, "The server is shutting down; retry on another instance.")
                self._cond.wait(QUEUE_POLL_SECONDS)
            self._waiting.popleft()
            self._running += 1
            self._cond.notify_all()

    def _refuse(self, job: Job, message: str) -> None:
        job.state, job.error, job.finished = JobState.FAILED, "GPU_BUSY", time.time()
        raise Busy(message, retry_after=RETRY_AFTER_SECONDS)

    def _release(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


def _step_all(jobs: list[Job], done: int, total: int) -> bool:
    """A batch's step: every job sees it; cancelled jobs drop out; the call stops when all have."""
    stop = False
    for job in jobs:
        if job.state != JobState.RUNNING:
            continue
        try:
            stop = job.on_step(done, total) or stop
        except Cancelled:
            job.state = JobState.CANCELLED
    if all(job.state == JobState.CANCELLED for job in jobs):
        raise Cancelled("Every job of the batch was cancelled")
    return stop
