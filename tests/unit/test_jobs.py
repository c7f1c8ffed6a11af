"""Slots, queue, batching and the attention gate under concurrency, with a stand-in generator.

The generator here is a stand-in (it counts steps and waits at each one while the test holds
it), not Diffusers: these tests are about who waits, who runs and who is told what. The server
tests run the real thing. Nothing here orders events by sleeping.
"""

from __future__ import annotations

import threading
import time

import pytest

from pico.errors import Busy, Cancelled
from pico.jobs import Jobs, JobState
from pico.pipelines.base import ModeGate
from pico.schemas.results import Generation

STEPS = 20


class Request:
    """Just enough of a request for Jobs: a name to batch by."""

    def __init__(self, name: str, key: str = "k", total: int = 1):
        self.name, self.key, self.total = name, key, total


class Held:
    """A hold on the stand-in generator: while it is on, every step waits for release()."""

    def __init__(self):
        self._released = threading.Event()

    def wait(self) -> None:
        assert self._released.wait(30), "never released"

    def release(self) -> None:
        self._released.set()


def fake_generate(calls: list, hold: Held | None = None):
    def generate_batch(requests, on_step=None, on_preview=None):
        calls.append([r.name for r in requests])
        for step in range(1, STEPS + 1):
            if on_step is not None and on_step(step, STEPS):
                break
            if hold is not None:
                hold.wait()
        return [Generation("Fake", [], [{"Seed": i}]) for i, _ in enumerate(requests)]
    return generate_batch


def start(jobs: Jobs, name: str, results: dict, **kw) -> threading.Thread:
    def run():
        try:
            results[name] = jobs.run("fake", Request(name), **kw)[0]
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            results[name] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def running(jobs: Jobs) -> list:
    """Jobs running that have taken a step."""
    return [j for j in jobs.active() if j.state == JobState.RUNNING and j.step >= 1]


def test_a_job_cancelled_in_the_queue_never_blocks_the_ones_behind_it():
    calls: list = []
    hold = Held()
    jobs = Jobs(fake_generate(calls, hold), slots=1, queue=2)
    results: dict = {}
    threads = [start(jobs, "first", results)]
    wait_for(lambda: running(jobs))
    threads.append(start(jobs, "second", results))
    wait_for(lambda: jobs.counts()["QueueLength"] == 1)
    threads.append(start(jobs, "third", results))
    wait_for(lambda: jobs.counts()["QueueLength"] == 2)
    second = next(j for j in jobs.active() if j.state == JobState.QUEUED)
    jobs.cancel(second.id)
    wait_for(lambda: jobs.counts()["QueueLength"] == 1)  # it left while the first still runs
    hold.release()
    for thread in threads:
        thread.join(10)
    assert isinstance(results["second"], Cancelled)
    assert results["third"].state == JobState.DONE
    assert calls == [["first"], ["third"]]
    assert jobs.counts()["QueueLength"] == 0 and not jobs.busy


def test_a_job_cancelled_before_it_reaches_the_queue_leaves_no_trace():
    jobs = Jobs(fake_generate([]), slots=1, queue=1)
    job = jobs._new_job("fake", "pico", None)
    job._cancel.set()
    with pytest.raises(Cancelled):
        jobs.slots.acquire(job)
    assert jobs.counts() == {"SlotsInUse": 0, "Slots": 1, "QueueLength": 0, "QueueLimit": 1}


def test_busy_beyond_the_queue():
    hold = Held()
    jobs = Jobs(fake_generate([], hold), slots=1, queue=0)
    results: dict = {}
    first = start(jobs, "first", results)
    wait_for(lambda: running(jobs))
    with pytest.raises(Busy):
        jobs.run("fake", Request("second"))
    hold.release()
    first.join(10)
    assert results["first"].state == JobState.DONE


def test_cancelling_one_member_of_a_queued_batch_leaves_the_others():
    calls: list = []
    hold = Held()
    jobs = Jobs(fake_generate(calls, hold), slots=1, queue=4, batch_window=0.3, max_images=4,
                batch_key=lambda request: request.key)
    results: dict = {}
    blocker = start(jobs, "blocker", results)  # alone in its window, then it runs in the slot
    wait_for(lambda: running(jobs))
    members = [start(jobs, name, results) for name in ("a", "b", "c")]
    wait_for(lambda: len([j for j in jobs.active() if j.state == JobState.QUEUED]) == 3)
    wait_for(lambda: jobs.counts()["QueueLength"] == 3)  # the window closed: the batch waits for the slot
    leader = next(j for j in jobs.active() if j.state == JobState.QUEUED)
    jobs.cancel(leader.id)
    hold.release()
    for thread in [blocker, *members]:
        thread.join(10)
    cancelled = [name for name in "abc" if isinstance(results[name], Cancelled)]
    assert len(cancelled) == 1
    done = [results[name] for name in "abc" if name not in cancelled]
    assert [job.state for job in done] == [JobState.DONE, JobState.DONE]
    assert [job.batch_size for job in done] == [2, 2]
    assert sorted(calls[-1]) == [name for name in "abc" if name not in cancelled]  # in arrival order, any


def test_a_lone_request_waits_the_window_and_no_longer():
    calls: list = []
    jobs = Jobs(fake_generate(calls), slots=1, queue=1, batch_window=0.3, max_images=4,
                batch_key=lambda request: request.key)
    started = time.monotonic()
    job = jobs.run("fake", Request("alone"))[0]
    waited = time.monotonic() - started
    assert (job.state, job.batch_size, calls) == (JobState.DONE, 1, [["alone"]])
    assert 0.29 <= waited < 10  # the window, then a generation that never waits


def test_an_interrupt_reaches_only_the_jobs_of_its_api():
    hold = Held()
    jobs = Jobs(fake_generate([], hold), slots=2, queue=0)
    results: dict = {}
    threads = [start(jobs, "pico", results), start(jobs, "a1111", results, origin="a1111")]
    wait_for(lambda: len(running(jobs)) == 2)  # both held at their first step
    hit = jobs.interrupt_running("a1111")
    hold.release()
    for thread in threads:
        thread.join(10)
    assert [job.origin for job in hit] == ["a1111"]
    assert results["a1111"].step == 2  # it stopped at the step after the interrupt
    assert results["pico"].step == STEPS


class WatchedCondition(threading.Condition):
    """A condition that notes which threads have waited on it."""

    def __init__(self):
        super().__init__()
        self.waiters: set[str] = set()

    def wait(self, timeout=None):
        self.waiters.add(threading.current_thread().name)
        return super().wait(timeout)


def test_a_call_waiting_to_switch_attention_is_not_starved():
    switches: list = []
    gate = ModeGate(switches.append)
    gate._cond = watched = WatchedCondition()
    order: list = []
    release_first = threading.Event()

    def call(name: str, slicing: bool, hold: threading.Event | None = None) -> threading.Thread:
        def run():
            with gate.use(slicing):
                order.append(name)
                if hold is not None:
                    hold.wait(5)
        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    first = call("plain-1", False, release_first)
    wait_for(lambda: order == ["plain-1"])
    sliced = call("sliced", True)
    wait_for(lambda: "sliced" in watched.waiters)
    late = call("plain-2", False)  # arrives after the switch was asked for: must wait behind it
    wait_for(lambda: "plain-2" in watched.waiters)
    assert order == ["plain-1"]
    release_first.set()
    for thread in (first, sliced, late):
        thread.join(5)
    assert order == ["plain-1", "sliced", "plain-2"]
    assert switches == [True, False]
