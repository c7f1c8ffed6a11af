"""A real `pico serve` process on a free port, and a small stdlib HTTP client for it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class LiveServer:
    """`python -m pico serve` as a subprocess; stopped with SIGTERM."""

    def __init__(self, models_dir: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None):
        self.port = free_port()
        self.log_path = log
        command = [sys.executable, "-m", "pico", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--models-dir", str(models_dir), "--device", "cpu", *args]
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(log, "wb") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pico serve exited with {self.process.returncode}: {self.log_text()}")
            try:
                if self.get("/api/v1/health", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"pico serve did not answer within {timeout}s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None, timeout: float = 120) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def wait_for_health(self, status: str, timeout: float = 30) -> float:
        """Poll health until it reports ``status``; returns the slowest health answer seen (seconds)."""
        deadline = time.monotonic() + timeout
        slowest = 0.0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            reply = self.get("/api/v1/health", timeout=5)
            slowest = max(slowest, time.perf_counter() - started)
            if reply.json == {"Status": status}:
                return slowest
            time.sleep(0.02)
        raise AssertionError(f"health never reported {status}")

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.process.returncode
