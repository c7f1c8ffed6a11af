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
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True  # nothing to read and no end-of-file: still connected
            return sock.recv(1, socket.MSG_PEEK) != b""
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except (OSError, ValueError):
            return False

    return alive
