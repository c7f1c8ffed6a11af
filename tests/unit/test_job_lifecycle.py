"""Batches capped by images, places held in the queue, answers at once on cancel, bounded job registry.

The generator is a fault-injection stand-in that holds each call until the test lets it go, so
the order of events is set by the test, never by timing.
"""

from __future__ import annotations

import sys
import threading

import pytest

from pico.errors import Busy, Cancelled
from pico.jobs import KEEP_FINISHED, Jobs, JobState
from pico.schemas.results import Generation


class Request:
    """Just enough of a request for Jobs: a name, a batch key and an image count."""

    def __init__(self, name: str, total: int = 1, key: str = "k"):
        self.name, self.total, self.key = name, total, key


class Held:
    """A stand-in generate_batch whose calls run one step, then wait for release() before finishing."""

    def __init__(self, only: str | None = None) -> None:
        self.only = only  # hold only calls holding the request of this name (None: every call)
        self.calls: list[list[str]] = []
        self.entered = threading.Semaphore(0)
        self.release_event = threading.Event()
        self.after: list = []  # functions run when a call ends, before it returns

    def __call__(self, requests, on_step=None, on_preview=None):
        self.calls.append([r.name for r in requests])
        if on_step is not None:
            on_step(1, 2)
        if self.only is None or any(r.name == self.only for r in requests):
            self.entered.release()
            self.release_event.wait(30)
        for function in self.after:
            function()
        if on_step is not None:
            on_step(2, 2)
        return [Generation("Fake", [], [{"Seed": 0}] * r.total) for r in requests]

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=10), "no call started"

    def release(self) -> None:
        self.release_event.set()


def in_thread(function, results: dict, name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = function()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            results[name] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 10) -> None:
    gate = threading.Event()
    for _ in range(int(timeout * 1000)):
        if condition():
            return
        gate.wait(0.001)
    raise AssertionError("timed out")


def batched(held: Held, slots: int = 1, queue: int = 0, window: float = 30, max_images: int = 4) -> Jobs:
    return Jobs(held, slots=slots, queue=queue, batch_window=window, max_images=max_images,
                batch_key=lambda request: request.key)


def test_a_batch_is_capped_by_images_not_requests():
    held = Held()
    held.release()
    jobs = batched(held, queue=8, window=0.05)
    results: dict = {}
    threads = [in_thread(lambda name=name: jobs.run("fake", Request(name, total=5)), results, name)
               for name in "abcd"]
    for thread in threads:
        thread.join(10)
    assert sorted(held.calls) == [["a"], ["b"], ["c"], ["d"]]  # 5 images each: never 20 in one call


def test_requests_join_until_the_batch_holds_max_images():
    held = Held()
    jobs = batched(held, queue=8)
    results: dict = {}
    first = in_thread(lambda: jobs.run("fake", Request("three", total=3)), results, "three")
    wait_until(lambda: jobs.known() == 1)
    second = in_thread(lambda: jobs.run("fake", Request("one", total=1)), results, "one")  # 3 + 1 = 4: full, runs
    held.wait_entered()
    held.release()
    for thread in (first, second):
        thread.join(10)
    assert held.calls == [["three", "one"]]
    assert results["three"][0].batch_size == 2


def test_requests_in_a_forming_batch_hold_their_place_against_others():
    held = Held()
    jobs = batched(held, slots=1, queue=0)
    results: dict = {}
    members = [in_thread(lambda name=name: jobs.run("fake", Request(name)), results, name) for name in "abcd"]
    wait_until(lambda: jobs.known() == 4)
    # A request of another kind arrives while the window is open: the batch holds the only slot.
    with pytest.raises(Busy):
        jobs.run("fake", Request("other", key="another"))
    assert jobs.known() == 4  # the refused request never became a job
    held.release()
    for thread in members:
        thread.join(10)
    assert [sorted(call) for call in held.calls] == [["a", "b", "c", "d"]] and all(results[n][0].state == JobState.DONE for n in "abcd")


def test_joining_a_queued_batch_needs_room_in_the_queue():
    held = Held()
    jobs = batched(held, slots=1, queue=2, window=0.001)
    results: dict = {}
    blocker = in_thread(lambda: jobs.run("fake", Request("blocker", key="alone")), results, "blocker")
    held.wait_entered()  # the blocker runs in the only slot
    queued = [in_thread(lambda name=name: jobs.run("fake", Request(name)), results, name) for name in "ab"]
    wait_until(lambda: jobs.counts()["QueueLength"] == 2)
    with pytest.raises(Busy):
        jobs.run("fake", Request("c"))  # the batch waiting in the queue already stands for 2 requests
    held.release()
    for thread in (blocker, *queued):
        thread.join(10)
    assert [sorted(call) for call in held.calls] == [["blocker"], ["a", "b"]]


def test_a_cancelled_member_of_a_running_batch_is_answered_at_once():
    held = Held()
    jobs = batched(held, queue=4, window=0.001)
    results: dict = {}
    leader = in_thread(lambda: jobs.run("fake", Request("a")), results, "a")
    wait_until(lambda: jobs.known() == 1)
    held.wait_entered()
    job = jobs.active()[0]
    jobs.cancel(job.id)
    leader.join(10)  # answered while the batch's call is still held
    assert isinstance(results["a"], Cancelled) and not held.release_event.is_set()
    assert jobs.get(job.id).state == JobState.CANCELLED
    held.release()


def test_a_disconnected_member_of_a_forming_batch_leaves_it():
    held = Held()
    jobs = batched(held, queue=4)
    results: dict = {}
    connected = {"b": True}
    a = in_thread(lambda: jobs.run("fake", Request("a")), results, "a")
    wait_until(lambda: jobs.known() == 1)
    b = in_thread(lambda: jobs.run("fake", Request("b"), alive=lambda: connected["b"]), results, "b")
    wait_until(lambda: jobs.known() == 2)
    connected["b"] = False
    b.join(10)
    assert isinstance(results["b"], Cancelled)
    for other in ("c", "d", "e"):  # fills the batch to 4 images: it runs without b
        in_thread(lambda name=other: jobs.run("fake", Request(name)), results, other)
    held.wait_entered()
    held.release()
    a.join(10)
    assert [sorted(call) for call in held.calls] == [["a", "c", "d", "e"]]


def test_an_interrupt_between_two_generations_of_a_call_ends_the_call():
    held = Held()
    held.release()
    jobs = Jobs(held, slots=1, queue=0)
    held.after.append(lambda: jobs.interrupt_running("a1111"))  # lands after the first generation's last step
    job, generations = jobs.run_many("fake", [Request("1"), Request("2"), Request("3")], origin="a1111")
    assert held.calls == [["1"]] and len(generations) == 1 and job.state == JobState.DONE


def test_a_skip_ends_only_the_generation_it_hits():
    held = Held()
    held.release()
    jobs = Jobs(held, slots=1, queue=0)
    skipped = []

    def skip_once() -> None:
        if not skipped:
            skipped.extend(jobs.skip_running("a1111"))
    held.after.append(skip_once)
    _, generations = jobs.run_many("fake", [Request("1"), Request("2")], origin="a1111")
    assert held.calls == [["1"], ["2"]] and len(generations) == 2


def test_describe_never_fails_while_steps_are_recorded():
    held = Held()
    jobs = Jobs(held, slots=1, queue=0)
    job = jobs._new_job("fake", "pico", None)
    stop = threading.Event()
    failures: list = []

    def steps() -> None:
        while not stop.is_set():
            job.on_step(1, 2)
            job.on_step(2, 2)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to land between a check and a division
    try:
        writer = threading.Thread(target=steps, daemon=True)
        writer.start()
        for _ in range(20_000):
            try:
                job.describe()
            except Exception as exc:  # noqa: BLE001 - any failure is the defect
                failures.append(exc)
                break
        stop.set()
        writer.join(10)
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_finished_jobs_are_bounded_even_while_a_long_job_runs():
    held = Held(only="long")
    jobs = Jobs(held, slots=2, queue=0)
    results: dict = {}
    long_one = in_thread(lambda: jobs.run("fake", Request("long")), results, "long")
    held.wait_entered()
    (running,) = jobs.active()
    for index in range(KEEP_FINISHED + 100):
        jobs.run("fake", Request(f"q{index}"))
    assert jobs.known() == KEEP_FINISHED + 1  # finished ones beyond the bound forgotten, the running one kept
    assert jobs.get(running.id).state == JobState.RUNNING
    held.release()
    long_one.join(10)


def test_refused_requests_never_become_jobs():
    held = Held()
    jobs = Jobs(held, slots=1, queue=0)
    results: dict = {}
    first = in_thread(lambda: jobs.run("fake", Request("first")), results, "first")
    held.wait_entered()
    for _ in range(50):
        with pytest.raises(Busy):
            jobs.run("fake", Request("refused"))
    assert jobs.known() == 1
    held.release()
    first.join(10)
