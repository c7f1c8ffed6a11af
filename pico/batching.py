"""Dynamic batching: requests that agree and arrive within a window share one pipeline call.

A batch takes its place in the slot queue (or its slot) when its first request arrives, and
requests that join it while it forms hold that place with it, counted against the queue. It
runs when the window since its first request is over, or when it holds ``max_images`` images
(not requests: four requests of Total 5 are 20 images, and one out-of-memory would fail them
all). Each request keeps its own job: a cancelled or disconnected one is answered at once and
drops out; the others go on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pico.errors import Cancelled
from pico.schemas.requests import GenerationRequest
from pico.schemas.results import Generation
from pico.slots import POLL_SECONDS, Slots

if TYPE_CHECKING:
    from pico.jobs import Job


@dataclass(eq=False)
class Batch:
    """Requests gathered in one window; in the queue, the ticket that stands for all of them."""

    key: tuple
    members: list[tuple["Job", GenerationRequest]] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    full: threading.Event = field(default_factory=threading.Event)  # stop waiting for the window
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # its pipeline call has begun: members can no longer leave it
    results: dict[str, Generation] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def size(self) -> int:
        """Requests it stands for in the queue."""
        return len(self.members)

    @property
    def images(self) -> int:
        """Images its pipeline call will make."""
        return sum(request.total for _, request in self.members)

    def gone(self) -> str | None:
        """Gone once every member is."""
        if all(job.gone() for job, _ in self.members):
            return "Every request of the batch was cancelled or left"
        return None


class Batcher:
    """Forms batches by key and runs each on its own thread through the slots; members wait for their part."""

    def __init__(self, slots: Slots, window: float, max_images: int,
                 generate_batch: Callable[..., list[Generation]],
                 start: Callable[["Job", int], None],
                 settle: Callable[["Job", BaseException | None, list[Generation]], None]):
        self.slots = slots
        self.window = window
        self.max_images = max_images
        self._generate_batch = generate_batch
        self._start = start
        self._settle = settle
        self._forming: dict[tuple, Batch] = {}
        self._lock = threading.Lock()

    def pending(self) -> int:
        """Requests in batches that are still forming."""
        with self._lock:
            return sum(batch.size for batch in self._forming.values())

    def run(self, key: tuple, job: "Job", request: GenerationRequest,
            admitted: Callable[[], None] = lambda: None) -> Generation:
        """Run ``request`` in the batch forming for ``key``, or lead a new one; ``admitted`` runs once it is in."""
        with self._lock:
            batch = self._forming.get(key)
            if batch is not None and batch.images + request.total <= self.max_images:
                self.slots.grow(batch, lambda: batch.members.append((job, request)))
            else:
                if batch is not None:  # it cannot take this request: it runs as it is
                    self._close(batch)
                batch = Batch(key, [(job, request)])
                has_slot = self.slots.admit(batch)
                self._forming[key] = batch
                threading.Thread(target=self._drive, args=(batch, has_slot), name="pico-batch", daemon=True).start()
            if batch.images >= self.max_images:
                self._close(batch)
        admitted()
        return self._wait(batch, job, request)

    def _close(self, batch: Batch) -> None:
        """No more requests join ``batch`` (caller holds the lock)."""
        if self._forming.get(batch.key) is batch:
            del self._forming[batch.key]
        batch.full.set()

    def _wait(self, batch: Batch, job: "Job", request: GenerationRequest) -> Generation:
        """A member's wait for its images; a member that is gone is answered now, not when the batch ends."""
        while not batch.done.is_set():
            reason = job.gone()
            if reason:
                with self._lock:
                    if not batch.started and (job, request) in batch.members:
                        batch.members.remove((job, request))
                        if not batch.members:
                            self._close(batch)
                self.slots.wake()
                raise Cancelled(reason)
            job.wakeup.wait(POLL_SECONDS)  # set by a cancel, and when the batch is done
            job.wakeup.clear()
        if job.id in batch.results:
            return batch.results[job.id]
        raise batch.error if batch.error is not None else Cancelled(f"Job {job.id} was cancelled")

    def _drive(self, batch: Batch, has_slot: bool) -> None:
        """The batch's own thread: wait for the slot and the window, run the call, hand out the images."""
        try:
            if not has_slot:
                self.slots.wait(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to every member
            self._finish(batch, exc)
            return
        try:
            left = self.window - (time.monotonic() - batch.created)
            if left > 0:
                batch.full.wait(left)
            with self._lock:
                self._close(batch)
                batch.started = True
                members = [(job, request) for job, request in batch.members if not job.gone()]
            if members:
                offset = 0
                for job, request in members:
                    job.image_offset, job.image_count = offset, request.total
                    offset += request.total
                    self._start(job, len(members))
                generations = self._generate_batch([request for _, request in members],
                                                   on_step=lambda done, total: _step_all(members, done, total),
                                                   on_preview=lambda done, render: _preview_all(members, done, render))
                for (job, _), generation in zip(members, generations):
                    if not job.cancelled:
                        batch.results[job.id] = generation
                        self._settle(job, None, [generation])
            error = None
        except BaseException as exc:  # noqa: BLE001 - handed to every member
            error = exc
        finally:
            self.slots.release()
        self._finish(batch, error)

    def _finish(self, batch: Batch, error: BaseException | None) -> None:
        batch.error = error
        for job, _ in batch.members:
            if job.id not in batch.results:
                self._settle(job, error or Cancelled(job.gone() or f"Job {job.id} was cancelled"), [])
        batch.done.set()
        for job, _ in batch.members:
            job.wakeup.set()


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


def _preview_all(members: list[tuple["Job", GenerationRequest]], done: int, render: Callable[[], list]) -> None:
    """Offer every member its slice of the call's previews, rendering them at most once."""
    rendered: list[list] = []

    def once() -> list:
        if not rendered:
            rendered.append(render())
        return rendered[0]

    for job, _ in members:
        job.on_preview(done, once)
