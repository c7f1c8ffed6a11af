"""The notice board: one small Serve deployment every front door and replica of an application talks to.

Replicas cannot be asked anything while their slots generate (Serve queues every call to a
replica behind ``max_ongoing_requests``, broadcasts too), and front doors keep nothing that
matters, so what must be seen across processes is pinned here:

- replicas report themselves (node, device, slots in use, models) every second, and at once
  when a generation starts or ends; one not heard from for ``REPLICA_TTL`` is gone;
- front doors publish their jobs (a few times a second while any is active), so
  ``/api/v1/jobs/<id>`` and A1111's progress work from any front door;
- signals: a cancel, interrupt or skip asked at one front door for another's job waits here
  until its front door collects it; an interrupt for a running call waits until its replica does.

Everything is bounded: finished jobs (the last ``KEEP_FINISHED``), and jobs, replicas and
signals whose owner stopped reporting are dropped. Every method is a coroutine that never
awaits, so each runs whole on the deployment's event loop: no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

REPLICA_TTL = 5.0  # seconds: replicas report every second
DOOR_TTL = 10.0  # seconds: front doors sync at least every two
SIGNAL_TTL = 60.0  # seconds an undelivered call signal is kept
KEEP_FINISHED = 500  # as pico.jobs.KEEP_FINISHED: finished jobs remembered for the jobs route
FINISHED = ("done", "failed", "cancelled")
Record = dict[str, Any]


class Board:
    """Replicas, jobs and signals of one PICO application on Ray."""

    def __init__(self, keep_finished: int = KEEP_FINISHED):
        self.keep_finished = keep_finished
        self._replicas: dict[str, tuple[float, Record]] = {}
        self._call_signals: dict[str, tuple[float, set[str]]] = {}
        self._doors: dict[str, float] = {}
        self._active: dict[str, Record] = {}
        self._finished: OrderedDict[str, Record] = OrderedDict()
        self._job_signals: dict[str, set[str]] = {}

    async def report_replica(self, replica_id: str, info: Record, calls: list[str]) -> dict[str, list[str]]:
        """A replica's state; returns the signals waiting for its running ``calls`` (each delivered once)."""
        now = time.monotonic()
        self._replicas[replica_id] = (now, info)
        self._call_signals = {c: s for c, s in self._call_signals.items() if now - s[0] < SIGNAL_TTL}
        return {call: sorted(self._call_signals.pop(call)[1]) for call in calls if call in self._call_signals}

    async def forget_replica(self, replica_id: str) -> None:
        """A replica that is shutting down."""
        self._replicas.pop(replica_id, None)

    async def replicas(self) -> list[Record]:
        """The replicas heard from lately, oldest first."""
        now = time.monotonic()
        self._replicas = {r: v for r, v in self._replicas.items() if now - v[0] < REPLICA_TTL}
        return [info for _, info in sorted(self._replicas.values(), key=lambda v: v[1].get("started", 0))]

    async def signal_call(self, call_id: str, kind: str) -> None:
        """Leave ``kind`` (interrupt) for the replica running ``call_id``."""
        self._call_signals.setdefault(call_id, (time.monotonic(), set()))[1].add(kind)

    async def sync_door(self, door: str, records: list[Record], forget: list[str] = ()) -> dict[str, list[str]]:
        """A front door's jobs (new or changed, and ``forget``: refused ones); returns the signals left for them."""
        self._doors[door] = time.monotonic()
        for job_id in forget:
            self._active.pop(job_id, None)
            self._finished.pop(job_id, None)
            self._job_signals.pop(job_id, None)
        for record in records:
            job_id = record["id"]
            record = {**record, "door": door}
            if record["state"] in FINISHED:
                self._active.pop(job_id, None)
                self._finished[job_id] = record
                self._finished.move_to_end(job_id)
                self._job_signals.pop(job_id, None)
            elif job_id not in self._finished:  # a late update never brings a job back to life
                self._active[job_id] = record
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)
        self._drop_gone_doors()
        return {job_id: sorted(self._job_signals.pop(job_id)) for job_id in list(self._job_signals)
                if job_id in self._active and self._active[job_id]["door"] == door}

    async def job(self, job_id: str) -> Record | None:
        """A job by id, running or finished; None when unknown."""
        self._drop_gone_doors()
        return self._active.get(job_id) or self._finished.get(job_id)

    async def active_jobs(self, exclude_door: str = "") -> list[Record]:
        """Jobs queued or running, at every front door but ``exclude_door``, oldest first."""
        self._drop_gone_doors()
        return sorted((r for r in self._active.values() if r["door"] != exclude_door), key=lambda r: r["created"])

    async def signal_job(self, job_id: str, kind: str) -> Record | None:
        """Leave ``kind`` (cancel, interrupt, skip) for an active job's front door; the job's record, or None."""
        record = await self.job(job_id)
        if record is not None and job_id in self._active:
            self._job_signals.setdefault(job_id, set()).add(kind)
        return record

    async def signal_running(self, origin: str, kind: str, exclude_door: str = "") -> int:
        """Leave ``kind`` for every running job that ``origin`` (an API) started elsewhere; returns how many."""
        self._drop_gone_doors()
        running = [r for r in self._active.values()
                   if r["state"] == "running" and r["origin"] == origin and r["door"] != exclude_door]
        for record in running:
            self._job_signals.setdefault(record["id"], set()).add(kind)
        return len(running)

    def _drop_gone_doors(self) -> None:
        """Forget the active jobs of front doors that stopped syncing (they cannot end them any more)."""
        now = time.monotonic()
        gone = {door for door, seen in self._doors.items() if now - seen > DOOR_TTL}
        if not gone:
            return
        for door in gone:
            del self._doors[door]
        for job_id in [j for j, r in self._active.items() if r["door"] in gone]:
            del self._active[job_id]
            self._job_signals.pop(job_id, None)
