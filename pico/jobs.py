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
    batch: int = 0  # which of run_many's requests is running (A1111's job_no)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _alive: Callable[[], bool] = field(default=lambda: True, repr=False)

    def on_step(self, done: int, total: int) -> bool:
        """Record progress; abort here if cancelled (or the client left); True to stop early if interrupted."""
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
        )


class Jobs:
    """Runs generations through a fixed number of slots, with an optional FIFO queue."""

    def __init__(self, generate: Callable[..., Generation], slots: int = 1, queue: int = 0):
        self._generate = generate
        self.slots = slots
        self.queue_limit = queue
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
        place in the queue, or stops at its next step.
        """
        job, (generation,) = self.run_many(pipeline, [request], on_start, alive)
        return job, generation

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
            for job.batch, request in enumerate(requests):
                generation = self._generate(request, on_step=job.on_step)
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
