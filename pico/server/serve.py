"""Run the app on Cheroot: more HTTP threads than generation slots, graceful stop on SIGTERM/Ctrl-C."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading

from pico.catalog.files import ModelFiles
from pico.config import Settings
from pico.errors import PicoError
from pico.server.app import create_app
from pico.server.http_server import PicoServer

log = logging.getLogger("pico")

HASH_CHECK_SECONDS = 10  # how often new checkpoint files are looked for, to hash them
SPARE_HTTP_THREADS = 8  # so health and status answer while every slot generates
CANCEL_GRACE = 10  # seconds a cancelled generation gets to reach its next step


def http_threads(settings: Settings) -> int:
    """Worker threads: one per request a slot can run (a batch holds several), per queue place and per event
    stream (Cheroot gives a streaming response its thread for its whole life), plus spares for everything else.

    A generation answered as a stream holds its thread just as long as one answered at the end, so it is
    counted by the slots and the queue; only followers of jobs (``--max-streams``) need threads of their own.
    """
    per_slot = settings.max_batch if settings.batch_window_ms else 1
    ray_gate = 2 if settings.ray else 1  # pico.ray.jobs lets twice its slots and queue in, for Serve to refuse
    return ray_gate * (settings.generation_slots * per_slot + settings.queue) + settings.max_streams + SPARE_HTTP_THREADS


class CheckpointHasher:
    """Hashes new checkpoint files in the background, as A1111 lists them: "name.safetensors [hash]".

    Each file is read once (the hash is kept on disk by path, size and mtime); the folders are looked
    at again every ``every`` seconds, so a file added while the server runs gets its hash too.
    """

    def __init__(self, files: ModelFiles | None, every: float = HASH_CHECK_SECONDS):
        self.files, self.every = files, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pico-hash", daemon=True)

    def start(self) -> None:
        """Begin hashing (nothing to do without checkpoint folders)."""
        if self.files is not None:
            self._thread.start()

    def stop(self) -> None:
        """Hash nothing more (a file half read is left for next time)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                hashed = self.files.hash_checkpoints()
                if hashed:
                    log.info("hashed %d checkpoint file(s) (A1111's model hash)", hashed)
            except Exception:  # noqa: BLE001  (a listing without hashes beats a dead thread)
                log.exception("hashing checkpoint files failed")
            self._stop.wait(self.every)


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or Ctrl-C; running generations finish first (bounded). Returns the exit status."""
    if settings.ray:  # generations run on a Ray cluster; Ray is imported only then
        from pico.ray.server import create_ray_app

        app = create_ray_app(settings)
    else:
        app = create_app(settings)
    service = app.config["pico.service"]
    service.engine.leave_a_core_free()
    service.engine.warm_up(settings.preload)
    hasher = CheckpointHasher(service.engine.resolver.files)
    server = PicoServer((settings.host, settings.port), app, numthreads=http_threads(settings),
                        server_name="pico", timeout=30, shutdown_timeout=settings.shutdown_timeout + CANCEL_GRACE,
                        max_header_bytes=settings.max_header_kb * 1024, header_timeout=settings.header_timeout)
    stopping = threading.Event()
    stopper = threading.Thread(target=lambda: _stop(server, service.jobs, settings.shutdown_timeout),
                               name="pico-stop")

    def on_signal(signum: int, _frame) -> None:
        if stopping.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        stopping.set()
        stopper.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.prepare()
    except OSError as exc:
        raise PicoError(f"Cannot listen on {settings.host}:{settings.port}: {exc}",
                        hint="Another process may hold the port; pick another with --port.") from exc
    host, port = server.bind_addr[:2]
    log.info("PICO %s listening on http://%s:%s (device %s, %d slot(s), queue %d)",
             _version(), host, port, service.engine.device, settings.threadsmax, settings.queue)
    log.info("playground: open %s in a browser", playground_url(host, port))
    if not settings.api_key and not _is_loopback(settings.host):
        log.warning("no API key set and listening on %s: anyone who can reach this port can use the GPU "
                    "(set --api-key or PICO_API_KEY)", settings.host)
    hasher.start()
    server.serve()
    hasher.stop()
    stopper.join(settings.shutdown_timeout + CANCEL_GRACE + 5)
    if stopper.is_alive():
        log.error("generations did not stop in time; exiting anyway")
        os._exit(1)
    service.engine.close()
    log.info("stopped")
    return 0


def _stop(server: PicoServer, jobs, timeout: int) -> None:
    """Stop accepting, turn queued jobs away, let running ones finish; cancel them after ``timeout``."""
    log.info("stopping: no new connections; waiting up to %ss for %d running generation(s)",
             timeout, jobs.counts()["SlotsInUse"])
    jobs.close()
    deadline = threading.Timer(timeout, lambda: _cancel_late(jobs, timeout))
    deadline.daemon = True
    deadline.start()
    server.stop()  # closes the listening socket now, then waits for in-flight requests
    deadline.cancel()


def _cancel_late(jobs, timeout: int) -> None:
    running = jobs.cancel_running()
    if running:
        log.warning("cancelled %d generation(s) still running after %ss", running, timeout)


def playground_url(host: str, port: int) -> str:
    """The page's address as a browser on this machine reaches it (a wildcard address is reached on loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _version() -> str:
    from pico import __version__

    return __version__
