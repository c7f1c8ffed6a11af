"""Generations on fixed threads, as the CUDA-graph compile modes need (pico/pipelines/threads.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pico.config import Settings
from pico.errors import Cancelled
from pico.pipelines.engine import Engine
from pico.pipelines.threads import GenerationThreads


def test_every_call_runs_on_the_same_named_thread_and_steps_reach_the_caller():
    threads = GenerationThreads(1)
    seen_steps = []

    def generate(step):
        step(1, 2)
        return threading.current_thread().name

    names = {threads.call(generate, lambda done, total: seen_steps.append((done, total))) for _ in range(3)}
    threads.close()
    assert len(names) == 1 and names.pop().startswith("pico-generate")
    assert seen_steps == [(1, 2)] * 3


def test_errors_come_back_to_the_caller():
    threads = GenerationThreads(1)

    def generate(_step):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        threads.call(generate, None)
    threads.close()


def test_a_caller_that_stops_waiting_stops_the_generation_at_its_next_step():
    threads, outcome, started = GenerationThreads(1), [], threading.Event()

    def generate(step):
        started.set()
        try:
            for done in range(1, 1000):
                time.sleep(0.01)
                step(done, 1000)
            outcome.append("finished")
        except Cancelled as exc:
            outcome.append(exc.message)
            raise

    threading.Thread(target=lambda: (started.wait(10), os.kill(os.getpid(), signal.SIGINT))).start()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in `pico stable-diffusion ...`
        threads.call(generate, None)
    threads.close()
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == ["The caller stopped waiting for this generation"]


@pytest.mark.parametrize("compile_mode, on_threads", [
    ("default", False), ("max-autotune-no-cudagraphs", False), ("reduce-overhead", True), ("max-autotune", True)])
def test_only_cuda_graph_modes_move_generations_to_their_own_threads(tiny_models, compile_mode, on_threads):
    engine = Engine(Settings(models_dir=tiny_models, device="cpu", compile=True, compile_mode=compile_mode))
    assert (engine.threads is not None) == on_threads
    engine.close()


def test_ctrl_c_during_work_without_steps_exits_at_once():
    # A model load or a compile has no steps to stop at; the process must not wait for it.
    script = ("import time\nfrom pico.pipelines.threads import GenerationThreads\n"
              "print('ready', flush=True)\nGenerationThreads(1).call(lambda step: time.sleep(60), None)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=20)
    assert time.monotonic() - started < 5
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
        engine.threads.close()
        engine.threads = None
    assert [m["Seed"] for m in generation.metadata] == [5]
    assert {name for _done, _total, name in steps} == {"pico-generate-0"}
    assert [done for done, _total, _name in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 2
