"""The front door's jobs on Ray: run as today, and published so that any front door sees any job.

Each front door keeps its own jobs (``pico.jobs.Jobs``): their generations stream their steps
back to it, so its progress, cancel and interrupt work as with a local engine. Several front
doors may stand behind one load balancer, so each publishes its jobs to the board a few times
a second, reads the others' from it, and collects the cancels, interrupts and skips that other
front doors left there for its jobs. Slots are the cluster's: a job is queued until a replica
takes it, and "busy" means every replica's slots are taken.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Sequence

from pico.config import Settings
from pico.errors import Busy, NotFound, PicoError
from pico.jobs import Job, Jobs, JobState
from pico.schemas.results import Generation

if TYPE_CHECKING:
    from pico.ray.backend import RayBackend

log = logging.getLogger("pico")

PUBLISH_SECONDS = 0.2  # while this front door has active jobs
IDLE_SECONDS = 2.0  # a heartbeat otherwise (the board forgets front doors silent for 10 s)


class ClusterJobs(Jobs):
    """Jobs whose generations run on the cluster, visible and controllable from every front door."""

    def __init__(self, backend: "RayBackend", settings: Settings):
        # Serve's back-pressure refuses what the cluster cannot take; the local gate, twice as
        # wide, only bounds what one front door sends while replicas come and go.
        super().__init__(backend.generate_batch, 2 * (settings.generation_slots + max(1, settings.queue)), 0,
                         batch_window=settings.batch_window_ms / 1000, max_images=settings.max_batch,
                         batch_key=backend.batch_key)
        self.backend = backend
        self.queue_limit = max(1, settings.queue)
        self.door = uuid.uuid4().hex[:12]
        self._calling = threading.local()  # the jobs a generation thread is about to run
        self._ended: list[Job] = []
        self._refused: list[str] = []
        self._wake = threading.Event()
        self._idle = True  # the publisher has nothing to publish and sleeps IDLE_SECONDS
        self._stop = threading.Event()
        backend.tracker = self
        threading.Thread(target=self._publish_forever, name="pico-publish", daemon=True).start()

    # The backend asks which jobs a call is for, and says when a replica took them.

    def start(self, job: Job, batch_size: int = 1) -> None:
        """A job about to be sent to the cluster: it stays queued until a replica takes it."""
        with self._lock:
            if job.finished is None:
                job.batch_size = batch_size
        calling = self._calling
        if not getattr(calling, "collecting", False):
            calling.jobs, calling.collecting = [], True
        calling.jobs.append(job)
        if self._idle:  # the publisher sleeps long while nothing runs: publish this job now
            self._wake.set()

    def current(self) -> list[Job]:
        """The jobs the calling thread's generation is for (those start() saw last on this thread)."""
        calling = self._calling
        calling.collecting = False
        return [job for job in getattr(calling, "jobs", []) if job.finished is None]

    def running(self, jobs: Sequence[Job]) -> None:
        """A replica took these jobs' call."""
        with self._lock:
            for job in jobs:
                if job.finished is None and job.state == JobState.QUEUED:
                    job.state, job.started = JobState.RUNNING, time.time()

    def settle(self, job: Job, error: BaseException | None, generations: Sequence[Generation] = ()) -> None:
        """Record how a job ended, and publish it; one the cluster refused was never a job (as without Ray)."""
        super().settle(job, error, generations)
        with self._lock:
            if type(error) is Busy:  # Serve's back-pressure, or this front door shutting down
                self._finished.pop(job.id, None)
                self._refused.append(job.id)
            else:
                self._ended.append(job)  # published with the next sync, within PUBLISH_SECONDS

    # What the routes read and ask, across front doors.

    def get(self, job_id: str) -> Job:
        """A job of any front door, by id."""
        try:
            return super().get(job_id)
        except NotFound as missing:
            record = self.backend.board("job", job_id)
            if record is None:
                raise missing from None
            return job_from(record)

    def refresh(self, job: Job) -> bool:
        """Bring a copy of another front door's job up to date from the board; False for this door's own job."""
        try:
            super().get(job.id)
            return False
        except NotFound:
            pass
        record = self.backend.board("job", job.id)
        if record is not None:
            latest = job_from(record)
            for name in ("state", "step", "steps", "started", "finished", "error", "images", "batch_size", "part",
                         "stopping", "_timing"):
                setattr(job, name, getattr(latest, name))
        elif job.finished is None:  # forgotten by the board: its front door went away
            job.state, job.finished, job.error = JobState.FAILED, time.time(), "LOST"
        return True

    def cancel(self, job_id: str) -> Job:
        """Cancel a job here, or leave the cancel for its front door (it stops within a second)."""
        try:
            super().get(job_id)
        except NotFound as missing:
            record = self.backend.board("signal_job", job_id, "cancel")
            if record is None:
                raise missing from None
            return job_from(record)
        return super().cancel(job_id)

    def interrupt_running(self, origin: str) -> list[Job]:
        """Interrupt ``origin``'s running jobs here and at every other front door."""
        local = super().interrupt_running(origin)
        self.backend.board("signal_running", origin, "interrupt", self.door)
        return local

    def skip_running(self, origin: str) -> list[Job]:
        """Skip the running generation of ``origin``'s jobs here and at every other front door."""
        local = super().skip_running(origin)
        self.backend.board("signal_running", origin, "skip", self.door)
        return local

    def active(self) -> list[Job]:
        """Jobs running or waiting at every front door, oldest first."""
        others = [job_from(record) for record in self.backend.board("active_jobs", self.door)]
        return sorted(super().active() + others, key=lambda job: job.created)

    @property
    def busy(self) -> bool:
        """True while every replica's slots are taken (False before the first replica reports)."""
        replicas = self.backend.replicas()
        return bool(replicas) and all(r["busy"] >= r["slots"] for r in replicas)

    def counts(self) -> dict[str, int]:
        """The replicas' slots in use and in all; this front door's jobs waiting for a replica."""
        replicas = self.backend.replicas()
        waiting = sum(1 for job in super().active() if job.state == JobState.QUEUED)
        return {"SlotsInUse": sum(r["busy"] for r in replicas), "Slots": sum(r["slots"] for r in replicas),
                "QueueLength": waiting, "QueueLimit": self.queue_limit}

    def stop_publishing(self) -> None:
        """End the publishing thread (the front door is leaving the cluster)."""
        self._stop.set()
        self._wake.set()

    # Publishing.

    def _publish_forever(self) -> None:
        while not self._stop.is_set():
            active = Jobs.active(self)
            with self._lock:
                ended, self._ended = self._ended, []
                refused, self._refused = self._refused, []
            try:
                signals = self.backend.board("sync_door", self.door, [record_of(job) for job in active + ended],
                                             refused)
            except PicoError as exc:
                with self._lock:
                    self._ended = ended + self._ended  # published next time
                    self._refused = refused + self._refused
                log.debug("cannot publish jobs: %s", exc.message)
                signals = {}
            for job_id, kinds in signals.items():
                self._apply(job_id, kinds)
            # Changes are published on this beat, not as they happen: each publish is a cluster call,
            # and a busy front door's jobs change many times a second.
            self._idle = not active and not Jobs.active(self)
            self._wake.wait(PUBLISH_SECONDS if not self._idle else IDLE_SECONDS)
            self._wake.clear()

    def _apply(self, job_id: str, kinds: list[str]) -> None:
        """Act on what another front door asked for one of this front door's jobs."""
        try:
            job = Jobs.get(self, job_id)
        except NotFound:
            return
        if "cancel" in kinds:
            Jobs.cancel(self, job_id)
        if "interrupt" in kinds:
            job.interrupt()
        if "skip" in kinds:
            job.skip()


def record_of(job: Job) -> dict[str, Any]:
    """A job as the board keeps it."""
    return {"id": job.id, "pipeline": job.pipeline, "origin": job.origin, "state": job.state.value,
            "step": job.step, "steps": job.steps, "created": job.created, "started": job.started,
            "finished": job.finished, "error": job.error, "images": job.images, "seeds": list(job.seeds),
            "batch_size": job.batch_size, "part": job.part, "stopping": job.stopping, "skip_part": job.skip_part,
            "timing": job._timing}


def job_from(record: dict[str, Any]) -> Job:
    """A job another front door published, for reading (its cancel goes through the board)."""
    return Job(id=record["id"], pipeline=record["pipeline"], origin=record["origin"], state=JobState(record["state"]),
               step=record["step"], steps=record["steps"], created=record["created"], started=record["started"],
               finished=record["finished"], error=record["error"], images=record["images"],
               seeds=list(record["seeds"]), batch_size=record["batch_size"], part=record["part"],
               stopping=record["stopping"], skip_part=record["skip_part"], _timing=record["timing"])
