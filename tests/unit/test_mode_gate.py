"""A model's mode (attention slicing, LoRA set) switches only while no call runs, in arrival order (ModeGate)."""

from __future__ import annotations

import threading

import pytest

from pico.pipelines.base import ModeGate


class Recorder:
    """The gate's switch function: records each switch and how many calls ran at that moment."""

    def __init__(self, fail_on: object = None) -> None:
        self.gate = ModeGate(self.switch, initial="base")
        self.switches: list[tuple[object, int]] = []
        self.running = 0
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def switch(self, mode: object) -> None:
        self.switches.append((mode, self.running))
        if mode == self.fail_on:
            raise ValueError(f"cannot switch to {mode}")


def wait_until(condition, timeout: float = 10) -> None:
    """Poll ``condition`` every millisecond until it holds (the calls under test set no event for it)."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            assert not done.is_set(), "timed out"
            done.wait(0.001)
    finally:
        deadline.cancel()


def hold(recorder: Recorder, mode: object, order: list, name: str) -> tuple[threading.Thread, threading.Event,
                                                                             threading.Event]:
    """A call in ``mode`` that stays in the gate until its release event is set."""
    entered, release = threading.Event(), threading.Event()

    def run() -> None:
        with recorder.gate.use(mode):
            with recorder.lock:
                recorder.running += 1
                order.append(name)
            entered.set()
            release.wait(30)
            with recorder.lock:
                recorder.running -= 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, entered, release


def test_slicing_never_switches_under_a_running_call():
    # --threadsmax 3 on one model: A (plain) runs, B (sliced) and C (plain) wait; B must switch and run,
    # and C must not switch back while B is still running.
    recorder, order = Recorder(), []
    recorder.gate = ModeGate(recorder.switch, initial=False)
    a = hold(recorder, False, order, "A")
    a[1].wait(10)
    b = hold(recorder, True, order, "B")
    wait_until(lambda: recorder.gate._waiting[True] == 1)
    c = hold(recorder, False, order, "C")
    wait_until(lambda: recorder.gate._waiting[False] == 1)
    assert order == ["A"]  # both wait while A runs: B for the mode, C behind B
    a[2].set()
    b[1].wait(10)
    assert order == ["A", "B"] and recorder.switches == [(True, 0)]
    assert not c[1].is_set()  # C waits for B to finish: switching now would change B's modules
    b[2].set()
    c[1].wait(10)
    c[2].set()
    for thread, _, _ in (a, b, c):
        thread.join(10)
    assert order == ["A", "B", "C"] and recorder.switches == [(True, 0), (False, 0)]


def test_three_modes_are_served_in_arrival_order_and_never_switch_under_a_call():
    recorder, order = Recorder(), []
    a = hold(recorder, "lora-a", order, "A")
    a[1].wait(10)
    b = hold(recorder, "lora-b", order, "B")
    wait_until(lambda: recorder.gate._waiting["lora-b"] == 1)
    c = hold(recorder, "lora-a", order, "C")  # A's mode, but B came first: C waits behind B
    wait_until(lambda: recorder.gate._waiting["lora-a"] == 1)
    d = hold(recorder, "base", order, "D")
    wait_until(lambda: recorder.gate._waiting["base"] == 1)
    assert order == ["A"]
    a[2].set()
    b[1].wait(10)
    assert order == ["A", "B"] and not c[1].is_set()
    b[2].set()
    c[1].wait(10)
    assert order == ["A", "B", "C"] and not d[1].is_set()
    c[2].set()
    d[1].wait(10)
    d[2].set()
    for thread, _, _ in (a, b, c, d):
        thread.join(10)
    assert recorder.switches == [("lora-a", 0), ("lora-b", 0), ("lora-a", 0), ("base", 0)]


def test_calls_in_one_mode_share_the_model_while_none_waits_for_another():
    recorder, order = Recorder(), []
    first = hold(recorder, "lora-a", order, "1")
    first[1].wait(10)
    second = hold(recorder, "lora-a", order, "2")
    second[1].wait(10)
    assert recorder.running == 2 and recorder.switches == [("lora-a", 0)]
    for call in (first, second):
        call[2].set()
        call[0].join(10)


def test_a_failed_switch_leaves_the_mode_unknown_so_the_next_call_switches_again():
    recorder = Recorder(fail_on="broken")
    with pytest.raises(ValueError):
        with recorder.gate.use("broken"):
            pass
    assert recorder.gate.mode is None
    with recorder.gate.use("base"):  # the modules may be half switched: "base" is applied again
        pass
    assert recorder.switches == [("broken", 0), ("base", 0)] and recorder.gate.mode == "base"
    assert sum(recorder.gate._waiting.values()) == 0 and recorder.gate._users == 0
