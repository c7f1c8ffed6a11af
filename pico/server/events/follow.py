"""Following one job as it runs: a watcher the job tells of each change, and the updates a stream sends.

A :class:`JobWatcher` is woken by the job (on its generation thread) and keeps at most a few
previews, so a slow reader costs bounded memory: it skips steps it was too slow to see and,
past ``keep`` previews, the oldest ones. :func:`follow` turns what the watcher saw into a
sequence of updates (queued, started, step, preview) for any transport to format.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pico.jobs import JobState

if TYPE_CHECKING:
    from PIL import Image

    from pico.jobs import Job

POLL_SECONDS = 0.2  # how often a follower looks at its client and its queue place when nothing else happens
HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
PREVIEW_JPEG_QUALITY = 80


class JobWatcher:
    """One follower's view of a job: a change counter to wait on, and the previews it asked for.

    ``wants(done, total)`` says at which steps this follower wants a preview; ``keep`` bounds the
    previews held for it (the oldest go first).
    """

    def __init__(self, wants: Callable[[int, int], bool] | None = None, keep: int = 4):
        self._wants = wants
        self._previews: deque[tuple[int, list[Image.Image]]] = deque(maxlen=keep)
        self._cond = threading.Condition()
        self._version = 0

    def changed(self) -> None:
        """Something changed: wake the follower."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def offer(self, done: int, total: int, render: Callable[[], list[Any]]) -> None:
        """Keep a preview of step ``done`` if this follower wants one then."""
        if self._wants is None or not self._wants(done, total):
            return
        images = render()
        with self._cond:
            self._previews.append((done, images))
            self._version += 1
            self._cond.notify_all()

    @property
    def version(self) -> int:
        """The change counter: wait for it to pass a value seen before."""
        return self._version

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until something changes after ``seen`` (or ``timeout`` seconds pass); the counter now."""
        with self._cond:
            if self._version == seen:
                self._cond.wait(timeout)
            return self._version

    def previews(self) -> list[tuple[int, list["Image.Image"]]]:
        """The previews kept since the last call, oldest first."""
        with self._cond:
            taken = list(self._previews)
            self._previews.clear()
        return taken


@dataclass(frozen=True)
class Update:
    """One thing a follower saw: ``kind`` is queued, started, step, preview or heartbeat."""

    kind: str
    data: dict[str, Any]
    images: tuple["Image.Image", ...] = ()  # a preview's images (small PIL images)


def follow(job: "Job", watcher: JobWatcher, position: Callable[["Job"], int], ended: Callable[[], bool],
           alive: Callable[[], bool] = lambda: True, from_admission: bool = False) -> Iterator[Update]:
    """The updates of ``job`` until ``ended()`` is true or ``alive()`` false (the caller then says how it ended).

    ``watcher`` must be watching the job already, so no change is lost between two looks.
    ``from_admission``: the follower came with the job (its own request), so it starts with queued
    even if the job took a free slot at once (Position 0). Steps a slow reader missed are skipped
    (the latest is sent); previews come after the step they were made at.
    """
    place: int | None = None
    if from_admission:
        place = position(job)
        yield Update("queued", {"Job": job.id, "Position": place})
    started = False
    step = 0
    quiet_since = time.monotonic()
    seen = watcher.version
    while True:
        finished = ended()  # read first: what follows is at least as new
        updates: list[Update] = []
        if not started and job.state == JobState.QUEUED and job.finished is None:
            now = position(job)
            if now != place:
                place = now
                updates.append(Update("queued", {"Job": job.id, "Position": now}))
        if not started and job.started is not None:
            started = True
            updates.append(Update("started", {"Job": job.id, "BatchSize": job.batch_size}))
        if started and job.step != step and job.steps:
            step = job.step
            updates.append(Update("step", _step_data(job)))
        for done, images in watcher.previews():
            updates.append(Update("preview", {"Step": done, "Steps": job.steps}, tuple(images)))
        yield from updates
        if finished:
            return
        now = time.monotonic()
        if updates:
            quiet_since = now
        elif now - quiet_since >= HEARTBEAT_SECONDS:
            quiet_since = now
            yield Update("heartbeat", {})
        if not alive():
            return
        seen = watcher.wait(seen, POLL_SECONDS)


def _step_data(job: "Job") -> dict[str, Any]:
    rate = job.steps_per_second
    left = None
    if rate:
        left = round((job.steps - job.step) / rate, 1)
    return {"Step": job.step, "Steps": job.steps, "StepsPerSecond": round(rate, 2) if rate else None,
            "ElapsedSeconds": round(job.elapsed, 2), "SecondsLeft": left}


def jpeg_base64(image: "Image.Image", quality: int = PREVIEW_JPEG_QUALITY) -> str:
    """A small image as base64 JPEG (previews are tiny: encoding one takes well under a millisecond)."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return base64.b64encode(out.getvalue()).decode("ascii")
