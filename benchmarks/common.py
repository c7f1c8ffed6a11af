"""What every benchmark needs: the machine it ran on, percentiles, a live server, results on disk.

Benchmarks are scripts, never collected by pytest (the file names do not start with test_).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


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
    from pico.pipelines.tiny import write_tiny_models

    folder = folder or ROOT / ".cache" / "bench-models"
    write_tiny_models(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m pico serve` on a free port, for as long as the with-block lasts."""

    def __init__(self, *args: str, timeout: float = 900):
        self.port = free_port()
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.timeout = timeout

    def __enter__(self) -> "Server":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        (ROOT / ".cache").mkdir(exist_ok=True)
        self.log = open(ROOT / ".cache" / f"bench-serve-{self.port}.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pico", "serve", *self.args], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pico serve exited: see {self.log.name}")
            try:
                if self.request("GET", "/api/v1/health", timeout=2)[0] == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"pico serve did not start in {self.timeout}s")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def request(self, method: str, path: str, body: Any = None, timeout: float = 600) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one HTTP request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


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
