"""The board's rules, without a cluster: bounded, signals delivered once to their owner, the silent forgotten."""

from __future__ import annotations

import asyncio

import pytest

from pico.ray import board as board_module
from pico.ray.board import Board


class Clock:
    """A hand-moved time.monotonic for the board's expiry rules."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(board_module.time, "monotonic", clock)
    return clock


def job(job_id: str, state: str = "running", origin: str = "pico", created: float = 1.0) -> dict:
    return {"id": job_id, "state": state, "origin": origin, "created": created}


def run(coroutine):
    return asyncio.run(coroutine)


def test_finished_jobs_are_bounded_and_a_late_update_never_revives_one(clock):
    board = Board(keep_finished=2)
    run(board.sync_door("a", [job("1"), job("2"), job("3")]))
    run(board.sync_door("a", [job("1", "done"), job("2", "failed"), job("3", "cancelled")]))
    assert run(board.job("1")) is None  # the oldest finished one is forgotten
    assert run(board.job("3"))["state"] == "cancelled"
    run(board.sync_door("a", [job("3", "running")]))  # an update that was overtaken by the job's end
    assert run(board.job("3"))["state"] == "cancelled"
    assert run(board.active_jobs()) == []
    run(board.sync_door("a", [job("4", state="queued")]))
    run(board.sync_door("a", [], ["4"]))  # refused by Serve's back-pressure: it never was a job
    assert run(board.job("4")) is None


def test_a_signal_reaches_the_owning_front_door_once_and_no_other(clock):
    board = Board()
    run(board.sync_door("a", [job("1", origin="a1111"), job("2", state="queued")]))
    run(board.sync_door("b", [job("3", origin="a1111")]))
    assert run(board.signal_job("2", "cancel"))["door"] == "a"
    assert run(board.signal_job("nope", "cancel")) is None
    assert run(board.signal_running("a1111", "interrupt", exclude_door="b")) == 1
    assert run(board.sync_door("b", [])) == {}
    assert run(board.sync_door("a", [])) == {"1": ["interrupt"], "2": ["cancel"]}
    assert run(board.sync_door("a", [])) == {}
    assert [r["id"] for r in run(board.active_jobs(exclude_door="a"))] == ["3"]


def test_silent_front_doors_and_replicas_are_forgotten_and_call_signals_expire(clock):
    board = Board()
    run(board.sync_door("a", [job("1")]))
    assert run(board.report_replica("r1", {"id": "r1", "started": 1}, [])) == {}
    run(board.signal_call("c1", "interrupt"))
    clock.now += board_module.REPLICA_TTL + 1
    assert run(board.replicas()) == []
    assert run(board.report_replica("r1", {"id": "r1", "started": 1}, ["c1"])) == {"c1": ["interrupt"]}
    assert run(board.report_replica("r1", {"id": "r1", "started": 1}, ["c1"])) == {}
    run(board.signal_call("c2", "interrupt"))
    clock.now += board_module.DOOR_TTL + board_module.SIGNAL_TTL
    assert run(board.job("1")) is None  # its front door stopped syncing
    assert run(board.report_replica("r1", {"id": "r1", "started": 1}, ["c2"])) == {}
