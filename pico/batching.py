"""Dynamic batching: requests that agree and arrive within a window share one pipeline call.

The first request of a batch waits the window (or until the batch is full), then the batch
waits for a slot as one ticket standing for all its requests, and runs as one
``generate_batch`` call. Each request keeps its own job: a cancelled one drops out, the
others go on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pico.errors import Cancelled
from pico.schemas.results import Generation
from pico.schemas.requests import GenerationRequest

if TYPE_CHECKING:
    from pico.jobs import Job, Jobs


@dataclass(eq=False)
class Batch:
    """Requests gathered in one window; in the queue, the ticket that stands for all of them."""

    members: list[tuple["Job", GenerationRequest]] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    results: dict[str, Generation] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def size(self) -> int:
        """Requests it stands for in the queue."""
        return len(self.members)

    def gone(self) -> str | None:
        """Gone once every member is."""
        if all(job.gone() for job, _ in self.members):
            return "Every request of the batch was cancelled or left"
        return None


class Batcher:
    """Forms batches by key and runs them through the jobs' slots."""

    def __init__(self, jobs: "Jobs", window: float, max_batch: int,
                 generate_batch: Callable[..., list[Generation]]):
        self.jobs = jobs
        self.window = window
        self.max_batch = max_batch
        self._generate_batch = generate_batch
        self._forming: dict[tuple, Batch] = {}
        self._lock = threading.Lock()

    def run(self, key: tuple, job: "Job", request: GenerationRequest) -> Generation:
        """Run ``request`` in the batch forming for ``key`` (leading a new one if there is none)."""
        with self._lock:
            pending = sum(batch.size for batch in self._forming.values())
            self.jobs.slots.check_room(pending)
            batch = self._forming.get(key)
            leader = batch is None
            if leader:
                batch = self._forming[key] = Batch()
            batch.members.append((job, request))
            if batch.size >= self.max_batch:
                del self._forming[key]
                batch.full.set()
        if leader:
            batch.full.wait(self.window)
            with self._lock:
                if self._forming.get(key) is batch:
                    del self._forming[key]
            try:
                self._run(batch)
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        if job.id in batch.results:
            return batch.results[job.id]
        raise batch.error if batch.error is not None else Cancelled(f"Job {job.id} was cancelled")

    def _run(self, batch: Batch) -> None:
        jobs = self.jobs
        try:
            jobs.slots.acquire(batch)
        except BaseException as exc:
            batch.error = exc
            for job, _ in batch.members:
                jobs.settle(job, exc)
            return
        members = [(job, request) for job, request in batch.members if not job.gone()]
        for job, _ in batch.members:
            if job.gone():
                jobs.settle(job, Cancelled(job.gone()))
        try:
            if not members:
                return
            for job, _ in members:
                jobs.start(job, batch_size=len(members))
            generations = self._generate_batch([request for _, request in members],
                                               on_step=lambda done, total: _step_all(members, done, total))
            for (job, _), generation in zip(members, generations):
                if job.cancelled:
                    jobs.settle(job, Cancelled(f"Job {job.id} was cancelled"))
                else:
                    batch.results[job.id] = generation
                    jobs.settle(job, None, [generation])
        except BaseException as exc:
            batch.error = exc
            for job, _ in members:
                if job.id not in batch.results:
                    jobs.settle(job, exc)
        finally:
            jobs.slots.release()


def _step_all(members: list[tuple["Job", GenerationRequest]], done: int, total: int) -> bool:
    """A batched call's step: every member sees it; a cancelled member drops out; all gone stops the call."""
    for job, _ in members:
        if not job.cancelled:
            try:
                job.on_step(done, total)
            except Cancelled:
                pass  # dropped: its images are discarded when the call ends
    if all(job.cancelled for job, _ in members):
        raise Cancelled("Every request of the batch was cancelled")
    return False

