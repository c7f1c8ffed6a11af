"""Generations on fixed threads, as the CUDA-graph compile modes need (pico/pipelines/threads.py).

The Ctrl-C tests run in a child process, so a signal never reaches pytest itself, and deliver
it only once the child says its caller is blocked in the call: no sleep decides the order. The
child turns Ctrl-C handling on itself: a test run started in the background (``cmd &`` without job
control) inherits SIGINT ignored.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest

from pico.config import Settings
from pico.pipelines.engine import Engine
from pico.pipelines.threads import GenerationThreads


@pytest.fixture(autouse=True)
def no_generation_thread_left_behind():
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("pico-generate"):
            thread.join(10)
    assert [t.name for t in threading.enumerate() if t.name.startswith("pico-generate") and t.is_alive()] == []


def test_every_call_runs_on_the_same_named_thread_and_steps_reach_the_caller():
    threads = GenerationThreads(1)
    seen_steps = []

    def generate(step):
        step(1, 2)
        return threading.current_thread().name

    names = {threads.call(generate, lambda done, total: seen_steps.append((done, total))) for _ in range(3)}
    assert threads.close(wait_seconds=10)
    assert len(names) == 1 and names.pop().startswith("pico-generate")
    assert seen_steps == [(1, 2)] * 3


def test_errors_come_back_to_the_caller():
    threads = GenerationThreads(1)

    def generate(_step):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        threads.call(generate, None)
    assert threads.close(wait_seconds=10)


# A child process: a generation that steps for about a minute unless stopped; SIGINT once the caller
# is blocked in the call and the generation has stepped. It prints what happened as one JSON line.
STEPPING_CHILD = """
import json, os, signal, sys, threading, time
from pico.errors import Cancelled
from pico.pipelines.threads import GenerationThreads

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started where it is ignored

target = sys.argv[1]  # "process": as Ctrl-C or kill send it; "generation": the kernel gave it to that thread
blocked, stepping, outcome = threading.Event(), threading.Event(), []

class Watched(GenerationThreads):
    def _wait(self, future):
        blocked.set()  # the caller is about to block in the call
        super()._wait(future)

def generate(step):
    pace = threading.Event()
    try:
        for done in range(1, 6001):
            step(done, 6000)
            stepping.set()
            pace.wait(0.01)
        outcome.append("finished")
    except Cancelled as exc:
        outcome.append(exc.message)
        raise

def interrupt():
    blocked.wait(60), stepping.wait(60)
    sent.append(time.monotonic())
    if target == "process":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        worker = next(t for t in threading.enumerate() if t.name == "pico-generate-0")
        signal.pthread_kill(worker.ident, signal.SIGINT)

sent = []
threads = Watched(1)
threading.Thread(target=interrupt, daemon=True).start()
try:
    threads.call(generate, None)
    caught = None
except KeyboardInterrupt:
    caught = time.monotonic() - sent[0]
ended = threads.close(wait_seconds=60)
print(json.dumps({"caught_after": caught, "outcome": outcome, "thread_ended": ended}), flush=True)
"""


@pytest.mark.parametrize("target", ["process", "generation"])
def test_a_caller_that_stops_waiting_stops_the_generation_at_its_next_step(target):
    # Ctrl-C in `pico stable-diffusion ...`; "generation": the kernel handed the signal to the generation
    # thread, where Python only notes it for the main thread, which must still notice it at once.
    child = subprocess.run([sys.executable, "-c", STEPPING_CHILD, target], capture_output=True, text=True, check=False,
                           timeout=180)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["outcome"] == ["The caller stopped waiting for this generation"]
    assert report["thread_ended"] is True
    assert report["caught_after"] is not None and report["caught_after"] < 10  # the generation lasts a minute


@pytest.mark.parametrize("compile_mode, on_threads", [
    ("default", False), ("max-autotune-no-cudagraphs", False), ("reduce-overhead", True), ("max-autotune", True)])
def test_only_cuda_graph_modes_move_generations_to_their_own_threads(tiny_models, compile_mode, on_threads):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", compile=True, compile_mode=compile_mode))
    assert (engine.threads is not None) == on_threads
    engine.close()


# A child process whose generation never ends and never steps (a model load, a compile).
ENDLESS_CHILD = """
import signal, threading
from pico.pipelines.threads import GenerationThreads

signal.signal(signal.SIGINT, signal.default_int_handler)

blocked, working = threading.Event(), threading.Event()

class Watched(GenerationThreads):
    def _wait(self, future):
        blocked.set()
        super()._wait(future)

def ready():
    blocked.wait(60), working.wait(60)
    print("ready", flush=True)

threading.Thread(target=ready, daemon=True).start()
Watched(1).call(lambda step: (working.set(), threading.Event().wait()), None)
"""


def test_ctrl_c_during_work_without_steps_exits_at_once():
    # A model load or a compile has no steps to stop at; the process must not wait for it (it never ends).
    process = subprocess.Popen([sys.executable, "-c", ENDLESS_CHILD], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGINT and "KeyboardInterrupt" in err


def test_an_engine_generates_on_its_generation_thread(engine):
    # As in the CUDA-graph modes, without minutes of compiling: hand this engine the same threads.
    from pico.schemas.requests import StableDiffusionRequest

    engine.threads = GenerationThreads(1)
    try:
        steps = []
        request = StableDiffusionRequest.parse({"Phrase": "cat", "Steps": 2, "Seed": 5}, 2048 * 2048)
        generation = engine.generate(request, on_step=lambda done, total: steps.append(
            (done, total, threading.current_thread().name)))
    finally:
        assert engine.threads.close(wait_seconds=10)
        engine.threads = None
    assert [m["Seed"] for m in generation.metadata] == [5]
    assert {name for _done, _total, name in steps} == {"pico-generate-0"}
    assert [done for done, _total, _name in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 2
