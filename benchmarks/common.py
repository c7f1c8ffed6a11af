"""What every benchmark needs: the machine it ran on, percentiles, a live server, results on disk.

Benchmarks are scripts, never collected by pytest (the file names do not start with test_). The
live server, the tiny models and background calls are the test suite's own (tests/live.py).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.live import ROOT, Background, LiveServer, percentile, wait_until  # noqa: F401 - shared with the tests
from tests.live import tiny_models as write_tiny_models


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU name, library versions, date: what a result row needs to be reproducible."""
    import diffusers
    import torch

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "command": " ".join([Path(sys.argv[0]).name,
                                                                                     *sys.argv[1:]]),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99, mean and count of timings, in milliseconds."""
    return {"p50_ms": percentile(seconds, 50) * 1000, "p95_ms": percentile(seconds, 95) * 1000,
            "p99_ms": percentile(seconds, 99) * 1000, "mean_ms": statistics.fmean(seconds) * 1000,
            "n": len(seconds)}


def time_calls(call: Any, repeat: int, warm_up: int = 1) -> list[float]:
    """Seconds per ``call()``, ``repeat`` times, after ``warm_up`` untimed calls."""
    for _ in range(warm_up):
        call()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def tiny_models(folder: Path | None = None) -> Path:
    """The tiny demo models, written once into ``folder`` (default: .cache/bench-models in the repo)."""
    return write_tiny_models(folder or ROOT / ".cache" / "bench-models")


class Server(LiveServer):
    """`python -m pico serve ARGS` on a free port, for a with-block; its log goes to .cache/bench-serve-*.log."""

    def __init__(self, *args: str, timeout: float = 900):
        logs = ROOT / ".cache"
        logs.mkdir(exist_ok=True)
        super().__init__(args, log=logs / f"bench-serve-{os.getpid()}-{LiveServer.starts}.log", cwd=ROOT,
                         ready_timeout=timeout)


def write_results(name: str, results: dict[str, Any], markdown: str, out: Path | None, quiet: bool = False) -> None:
    """Print the markdown table (unless ``quiet``), and write both forms to ``out`` when given."""
    if not quiet:
        print(markdown)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(results, indent=2))
        (out / f"{name}.md").write_text(markdown + "\n")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    def cell(value: Any) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
