"""Watchers of jobs: each sees its own slice of a batched call's previews, rendered once; queue places; bounds.

The generator here is a stand-in whose steps wait for the test to let them go, so what each
watcher sees is decided by the test, never by timing. The server tests run the real thing.
"""

from __future__ import annotations

import threading

from pico.errors import Cancelled
from pico.jobs import Job, Jobs, JobState
from pico.schemas.results import Generation
from pico.jobs import preview_steps
from pico.server.events.follow import JobWatcher, follow

STEPS = 4
TIMEOUT = 10


class Request:
    def __init__(self, name: str, total: int = 1, key: str = "k"):
        self.name, self.total, self.key = name, total, key


class SteppedGenerator:
    """generate_batch whose every step waits for ``step()``; counts how often previews were rendered."""

    def __init__(self):
        self.allowed = threading.Semaphore(0)
        self.renders = 0
        self.calls: list[list[str]] = []

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.allowed.release()

    def __call__(self, requests, on_step=None, on_preview=None):
        self.calls.append([r.name for r in requests])
        images = [f"{r.name}-{i}" for r in requests for i in range(r.total)]

        def render():
            self.renders += 1
            return list(images)

        for done in range(1, STEPS + 1):
            assert self.allowed.acquire(timeout=TIMEOUT), "the test never let this step go"
            on_step(done, STEPS)
            on_preview(done, render)
        return [Generation("Fake", [], [{"Seed": i} for i in range(r.total)]) for r in requests]


def run_in_thread(jobs: Jobs, name: str, total: int = 1) -> tuple[threading.Thread, dict]:
    """Start a job on its own thread; ``box['job']`` is set once it is admitted."""
    box: dict = {"admitted": threading.Event()}

    def admitted(job: Job) -> None:
        box["job"] = job
        box["admitted"].set()

    def run() -> None:
        try:
            box["result"] = jobs.run("fake", Request(name, total), on_start=admitted)
        except Cancelled as exc:
            box["result"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert box["admitted"].wait(TIMEOUT)
    return thread, box


def test_each_watcher_of_a_batched_call_gets_its_own_images_rendered_once_per_step():
    generate = SteppedGenerator()
    jobs = Jobs(generate, slots=1, queue=2, batch_window=60, max_images=3, batch_key=lambda r: r.key)
    first_thread, first = run_in_thread(jobs, "a", 1)
    second_thread, second = run_in_thread(jobs, "b", 2)  # fills the batch: it runs at once, waiting on its steps
    watchers = {"a": JobWatcher(preview_steps(1)), "b": JobWatcher(preview_steps(2))}
    first["job"].watch(watchers["a"])
    second["job"].watch(watchers["b"])
    first["job"].preview_every = 4  # a poller too (A1111's progress): it shares the same rendering
    generate.step(STEPS)
    first_thread.join(TIMEOUT)
    second_thread.join(TIMEOUT)
    assert generate.calls == [["a", "b"]]
    assert generate.renders == STEPS  # once per step, for two watchers and a poller
    assert watchers["a"].previews() == [(1, ["a-0"]), (2, ["a-0"]), (3, ["a-0"]), (4, ["a-0"])]
    assert watchers["b"].previews() == [(2, ["b-0", "b-1"]), (4, ["b-0", "b-1"])]
    assert first["job"].preview is None  # a finished job keeps no preview
    assert first["job"].state == second["job"].state == JobState.DONE


def test_a_slow_watcher_keeps_only_its_newest_previews():
    watcher = JobWatcher(preview_steps(1), keep=3)
    for done in range(1, 11):
        watcher.offer(done, 10, lambda done=done: [done])
    assert watcher.previews() == [(8, [8]), (9, [9]), (10, [10])]
    assert watcher.previews() == []
    assert JobWatcher(None).previews() == [] and preview_steps(0) is None


def test_queue_places_count_the_requests_ahead_and_move_up():
    generate = SteppedGenerator()
    jobs = Jobs(generate, slots=1, queue=3)
    running_thread, running = run_in_thread(jobs, "running")
    threads = {}
    boxes = {}
    for name in ("second", "third"):
        threads[name], boxes[name] = run_in_thread(jobs, name)
    assert jobs.position(running["job"]) == 0
    assert [jobs.position(boxes[n]["job"]) for n in ("second", "third")] == [1, 2]
    jobs.cancel(boxes["second"]["job"].id)
    threads["second"].join(TIMEOUT)
    assert jobs.position(boxes["third"]["job"]) == 1 and jobs.position(boxes["second"]["job"]) == 0
    generate.step(2 * STEPS)
    for thread in (running_thread, threads["third"]):
        thread.join(TIMEOUT)
    assert jobs.position(boxes["third"]["job"]) == 0


def test_follow_tells_queued_started_steps_and_previews_in_order_then_stops_at_the_end():
    generate = SteppedGenerator()
    jobs = Jobs(generate, slots=1, queue=1)
    blocker_thread, blocker = run_in_thread(jobs, "blocker")
    watcher = JobWatcher(preview_steps(2))
    thread, box = run_in_thread(jobs, "followed")
    job = box["job"]
    job.watch(watcher)
    updates = follow(job, watcher, jobs.position, lambda: job.finished is not None, from_admission=True)
    assert next(updates).data == {"Job": job.id, "Position": 1}
    generate.step(STEPS)  # the blocker ends; the followed job starts and waits at its first step
    blocker_thread.join(TIMEOUT)
    seen = []
    for update in updates:
        seen.append((update.kind, update.data.get("Step"), list(update.images)))
        if update.kind == "queued":
            assert update.data["Position"] == 0
        if update.kind == "started":
            generate.step(STEPS)
    thread.join(TIMEOUT)
    kinds = [kind for kind, _, _ in seen]
    started = kinds.index("started")
    assert kinds[:started] in ([], ["queued"])  # at most "Position 0": it left the queue, not yet started
    assert "queued" not in kinds[started:]
    steps = [step for kind, step, _ in seen if kind == "step"]
    assert steps == sorted(steps) and steps[-1] == STEPS
    previews = [(step, images) for kind, step, images in seen if kind == "preview"]
    assert previews == [(2, ["followed-0"]), (4, ["followed-0"])]
    assert job.state == JobState.DONE and blocker["job"].state == JobState.DONE
