"""The fault seam itself (pico/faults.py): what each PICO_FAULTS option does to a step or a load."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from pico.errors import InvalidRequest
from pico.faults import Faults


def test_oom_and_error_faults_fire_the_given_number_of_times():
    faults = Faults("oom:1,error:2")
    with pytest.raises(torch.OutOfMemoryError):
        faults.at_step()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected fault: the pipeline failed"):
            faults.at_step()
    faults.at_step()
    assert not faults.active


def test_a_hold_keeps_steps_waiting_until_its_file_is_deleted(tmp_path):
    hold = tmp_path / "hold"
    hold.touch()
    faults = Faults(f"hold:{hold}")
    returned = threading.Event()
    step = threading.Thread(target=lambda: (faults.at_step(), returned.set()))
    step.start()
    assert not returned.wait(0.3)  # a working hold never returns while the file exists, however fast the machine
    hold.unlink()
    assert returned.wait(30)
    faults.at_step()  # no file: no wait
    assert faults.active  # a hold stays armed for the next time the file appears


def test_a_hold_file_holding_a_number_lets_steps_before_it_through_and_holds_from_it_on(tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("3")
    faults = Faults(f"hold:{hold}")
    faults.at_step(1)
    faults.at_step(2)  # before step 3: no wait
    returned = threading.Event()
    step = threading.Thread(target=lambda: (faults.at_step(3), returned.set()))
    step.start()
    assert not returned.wait(0.3)  # held at step 3 while the file says 3
    hold.write_text("4")
    assert returned.wait(30)  # moved on: the next hold is at step 4
    assert hold.read_text() == "4"  # the server only reads the file
    hold.unlink()
    faults.at_step(9)


def test_slow_makes_each_step_last_at_least_that_long():
    faults = Faults("slow:0.05")
    started = time.monotonic()
    for _ in range(4):
        faults.at_step()
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("spec", ["hold:", "slow:soon", "slow:-1", "oom:x", "melt:1"])
def test_an_unknown_fault_is_refused_naming_the_options(spec):
    with pytest.raises(InvalidRequest) as caught:
        Faults(spec)
    assert caught.value.message == (f"PICO_FAULTS has an unknown fault {spec!r}; use oom:N, error:N, load:GLOB, "
                                    "loadoom:GLOB, hold:PATH or slow:SECONDS")
