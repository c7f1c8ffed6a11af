"""What the tests and the benchmarks share: a real `pico serve` on a free port, the tiny models,
a call run in the background with its result kept, percentiles.

Only the standard library at import time, so a benchmark on a bare GPU host can use it too.
A server started here can hold its generations open (``with server.held():``): it runs with
the ``hold:PATH`` fault (pico/faults.py), and the file PATH exists only inside the block.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.02  # how often wait_until looks again
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_models(folder: Path) -> Path:
    """The tiny random-weight models for every default id, written once into ``folder``."""
    from pico.pipelines.tiny import write_tiny_models

    write_tiny_models(folder)
    return folder


@dataclass
class Reply:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header's value by name, any case."""
        return self.headers.get(name.lower())


def wait_until(check: Callable[[], T], timeout: float = 60, what: str = "the condition") -> T:
    """Call ``check`` until it returns something truthy, and return that; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, linear between samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Background:
    """``call(*args, **kwargs)`` running on its own thread, its result or exception kept for later."""

    def __init__(self, call: Callable[..., Any], *args: Any, **kwargs: Any):
        self._value: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            self._value = call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            self._error = exc

    @property
    def done(self) -> bool:
        """True once the call returned or raised."""
        return not self.thread.is_alive()

    def result(self, timeout: float = 120) -> Any:
        """The call's return value (or its exception, raised here), waiting up to ``timeout`` for it."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the background call still runs after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._value


class Hold:
    """The hold file of a server: while it exists, the server's generations wait at each step (or, once
    ``to_step(N)`` wrote N into it, from step N on)."""

    def __init__(self, path: Path):
        self.path = path

    def release(self) -> None:
        """Let the held generations go on."""
        self.path.unlink(missing_ok=True)

    def to_step(self, step: int) -> None:
        """Let the held generations go on to step ``step`` and wait there (its job reports it, previews included)."""
        moved = self.path.with_name(self.path.name + ".next")
        moved.write_text(str(step))
        moved.replace(self.path)  # whole at once: the server never reads half a number


class LiveServer:
    """`python -m pico serve ARGS` on a free port of 127.0.0.1, until stop() (SIGTERM).

    ``hold``: a file path for the hold fault (see ``held``); ``log``: where its output goes.
    """

    starts = 0  # servers started by this process, for the suite's summary

    def __init__(self, args: Sequence[str] = (), *, env: dict[str, str] | None = None, log: Path | None = None,
                 hold: Path | None = None, cwd: Path | None = None, ready_timeout: float = 120):
        self.port = free_port()
        self.log_path = log
        self.hold_path = hold
        env = dict(env or {})
        if hold is not None:
            env["PICO_FAULTS"] = ",".join(filter(None, [env.get("PICO_FAULTS", ""), f"hold:{hold}"]))
        command = [sys.executable, "-m", "pico", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env}
        self._log = open(log, "wb") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=full_env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT)
        LiveServer.starts += 1
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"pico serve exited with {self.process.returncode}: {self.log_text()[-3000:]}")
            try:
                return self.get("/api/v1/health", timeout=2).status == 200
            except OSError:
                return False

        try:
            wait_until(answers, timeout, "pico serve to answer")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"pico serve did not answer within {timeout}s: {self.log_text()[-3000:]}") from None

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None, timeout: float = 120) -> Reply:
        """One request on a fresh connection; ``body`` is sent as JSON, ``raw`` as it is."""
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
        """GET ``path``."""
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        """POST ``body`` as JSON to ``path``."""
        return self.request("POST", path, body, **kw)

    def jobs(self, state: str | None = None) -> list[dict]:
        """The active jobs /api/v1/status lists, oldest first; only those in ``state`` if given."""
        return [job for job in self.get("/api/v1/status").json["Jobs"] if state in (None, job["State"])]

    def wait_for_jobs(self, state: str, count: int = 1, timeout: float = 60) -> list[dict]:
        """Wait until exactly ``count`` jobs are in ``state`` (running ones: with a step taken); returns them."""
        def found() -> list[dict] | None:
            jobs = [j for j in self.jobs(state) if state != "running" or j["Step"] >= 1]
            return jobs if len(jobs) == count else None

        return wait_until(found, timeout, f"{count} {state} job(s)")

    def wait_for_health(self, status: str, timeout: float = 60) -> float:
        """Poll health until it reports ``status``; returns the slowest health answer seen (seconds)."""
        slowest = [0.0]

        def reports() -> bool:
            started = time.perf_counter()
            reply = self.get("/api/v1/health", timeout=5)
            slowest[0] = max(slowest[0], time.perf_counter() - started)
            return reply.json == {"Status": status}

        wait_until(reports, timeout, f"health to report {status}")
        return slowest[0]

    @contextmanager
    def held(self) -> Iterator[Hold]:
        """Inside the block, every generation of this server waits at each step (release() lets them go)."""
        if self.hold_path is None:
            raise RuntimeError("this server was started without a hold file")
        self.hold_path.touch()
        hold = Hold(self.hold_path)
        try:
            yield hold
        finally:
            hold.release()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` (SIGTERM: stop gracefully) and wait for the exit; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.close()
        return self.process.returncode


def tiny_server(models_dir: Path, *args: str, **options: Any) -> LiveServer:
    """A LiveServer on the CPU with the tiny models of ``models_dir``, for a test that needs one of its own."""
    return LiveServer(["--device", "cpu", "--models-dir", str(models_dir), *args], **options)
