"""Attention slicing is switched on shared modules only while no call runs (pico.pipelines.base.AttentionGate)."""

from __future__ import annotations

import threading

from pico.pipelines.base import AttentionGate


class Recorder:
    """The gate's switch function: records each switch and how many calls were running at that moment."""

    def __init__(self) -> None:
        self.gate = AttentionGate(self.switch)
        self.switches: list[tuple[bool, int]] = []
        self.running = 0
        self.lock = threading.Lock()

    def switch(self, slicing: bool) -> None:
        self.switches.append((slicing, self.running))


def hold(recorder: Recorder, slicing: bool, entered: threading.Event, release: threading.Event,
         order: list[str], name: str) -> threading.Thread:
    """A call that enters the gate in mode ``slicing`` and stays until ``release`` is set."""
    def run() -> None:
        with recorder.gate.use(slicing):
            with recorder.lock:
                recorder.running += 1
                order.append(name)
            entered.set()
            release.wait(30)
            with recorder.lock:
                recorder.running -= 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 10) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            assert not done.is_set(), "timed out"
            done.wait(0.001)
    finally:
        deadline.cancel()


def test_the_mode_never_switches_under_a_running_call():
    # --threadsmax 3 on one model: A (plain) runs, B (sliced) and C (plain) wait; B must switch and run,
    # and C must not switch back while B is still running.
    recorder, order = Recorder(), []
    events = {name: (threading.Event(), threading.Event()) for name in "ABC"}
    a = hold(recorder, False, *events["A"], order, "A")
    events["A"][0].wait(10)
    b = hold(recorder, True, *events["B"], order, "B")
    wait_until(lambda: recorder.gate._waiting[True] == 1)
    c = hold(recorder, False, *events["C"], order, "C")
    wait_until(lambda: recorder.gate._waiting[False] == 1)
    assert order == ["A"]  # both wait while A runs: B for the mode, C behind B
    events["A"][1].set()
    events["B"][0].wait(10)
    assert order == ["A", "B"] and recorder.switches == [(True, 0)]
    assert not events["C"][0].is_set()  # C waits for B to finish: switching now would change B's modules
    events["B"][1].set()
    events["C"][0].wait(10)
    events["C"][1].set()
    for thread in (a, b, c):
        thread.join(10)
    assert order == ["A", "B", "C"]
    assert recorder.switches == [(True, 0), (False, 0)]


def test_calls_in_the_same_mode_run_together():
    recorder, order = Recorder(), []
    first, second = (threading.Event(), threading.Event()), (threading.Event(), threading.Event())
    threads = [hold(recorder, True, *first, order, "1"), hold(recorder, True, *second, order, "2")]
    first[0].wait(10)
    second[0].wait(10)
    assert recorder.running == 2 and recorder.switches == [(True, 0)]
    first[1].set()
    second[1].set()
    for thread in threads:
        thread.join(10)
