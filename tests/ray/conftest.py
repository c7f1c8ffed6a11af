"""Real Ray for the ``ray`` tests: a local cluster per module, and a check that no Ray process outlives it."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY_PROCESSES = ("raylet", "gcs_server")


@dataclass
class RayCluster:
    address: str  # the GCS address front doors join with --ray
    temp: Path  # Ray's temp folder: every process of this cluster names it on its command line


def ray_processes(temp: Path) -> list[int]:
    """The raylet and GCS processes of the cluster whose temp folder is ``temp``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and str(temp) in command and any(name in command for name in RAY_PROCESSES):
            found.append(int(proc.name))
    return found


def assert_no_ray_process_left(temp: Path, timeout: float = 30) -> None:
    """Wait (bounded) for the cluster's processes to exit; fail if any is still there."""
    deadline = time.monotonic() + timeout
    while ray_processes(temp) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_processes(temp) == []


@pytest.fixture(scope="module")
def ray_temp():
    """A short temp folder for Ray (its socket paths must stay under 107 characters)."""
    temp = Path(tempfile.mkdtemp(prefix="pico-ray-", dir="/tmp"))
    yield temp
    assert_no_ray_process_left(temp)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(ray_temp: Path):
    """A two-CPU local cluster with Serve running and its HTTP proxy off; shut down after the module."""
    ray = pytest.importorskip("ray")
    from ray import serve

    context = ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
                       _temp_dir=str(ray_temp), namespace="pico")
    try:
        serve.start(proxy_location="Disabled")
        yield RayCluster(context.address_info["gcs_address"], ray_temp)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
