"""Whether the client of a request is still connected, for requests that wait a long time.

WSGI gives no standard way to ask; Cheroot keeps the socket under ``wsgi.input``. When it
cannot be found (another server), the client is taken to be there.
"""

from __future__ import annotations

import select
import socket
from typing import Callable


def _find_socket(environ: dict) -> socket.socket | None:
    stream = environ.get("wsgi.input")
    for _ in range(4):  # KnownLengthRFile -> StreamReader -> SocketIO -> socket
        if stream is None or isinstance(stream, socket.socket):
            break
        stream = getattr(stream, "rfile", None) or getattr(stream, "raw", None) or getattr(stream, "_sock", None)
    return stream if isinstance(stream, socket.socket) else None


def client_alive(environ: dict) -> Callable[[], bool]:
    """A check that is False once the client has closed its end of the connection."""
    sock = _find_socket(environ)
    if sock is None:
        return lambda: True

    def alive() -> bool:
        try:
            poller = select.poll()  # poll, not select: select fails on descriptors past 1023
            poller.register(sock, select.POLLIN | select.POLLHUP)
            events = poller.poll(0)
            if not events:
                return True  # nothing to read and no hang-up: still connected
            if events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return False
            return sock.recv(1, socket.MSG_PEEK) != b""
        except (BlockingIOError, InterruptedError, TimeoutError, ValueError):
            return True  # cannot tell: assume the client is still there
        except OSError:
            return False

    return alive


def liveness(environ: dict) -> Callable[[], bool]:
    """The client_alive check of this request, built once, before anything replaces ``wsgi.input``.

    Routes that swap the body stream (multipart forms are re-read from memory) call this first,
    so the check still finds the client's socket.
    """
    alive = environ.get("pico.alive")
    if alive is None:
        alive = environ["pico.alive"] = client_alive(environ)
    return alive
