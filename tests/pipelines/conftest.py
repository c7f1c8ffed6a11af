"""The pipeline tests run tiny models in this process."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models run on one torch thread: on a busy 2-core machine two threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
