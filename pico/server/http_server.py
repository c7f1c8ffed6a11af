"""Cheroot, with request heads gathered off the worker threads: slow clients cannot hold every worker.

Cheroot hands a connection to a worker thread as soon as it is accepted or readable, and the
worker then blocks reading the request head; Cheroot's ``timeout`` counts per socket read, so a
client that sends a byte every few seconds is never cut. A few such clients hold every worker
and health stops answering. Here the selector thread, which already watches every idle
connection, also gathers request heads: it takes whatever has arrived without blocking and
hands the connection to a worker only once the whole head (request line and headers) is in.
A slow client then costs a socket and at most ``max_header_bytes`` of memory, never a thread.

A head must be whole within ``header_timeout`` seconds of the connection's start (of its first
byte, on a kept-alive connection): 408 otherwise. A head over ``max_header_bytes`` gets 431
(414 when the request line alone is over). Growing the worker pool instead would spend a
thread per slow client and still need a deadline per head. Plain HTTP only, as PICO serves it
(TLS belongs to the proxy in front).
"""

from __future__ import annotations

import _pyio
import json
import logging
import os
import selectors
import socket
import time
from http import HTTPStatus

from cheroot import wsgi
from cheroot.connections import ConnectionManager
from cheroot.makefile import MakeFile, StreamReader
from cheroot.server import HTTPConnection

from pico.errors import HeadersTooLarge, PicoError, RequestTimeout, UriTooLong
from pico.server.errors import render, style_for

log = logging.getLogger("pico")

RECEIVE_BYTES = 64 * 1024  # most bytes taken from one connection per wake-up
DRAIN_SECONDS = 2  # after refusing a head, how long the rest of what the client sends is read and dropped


class _GatheredFirstSocketIO(socket.SocketIO):
    """A socket's reads, starting with the bytes the selector thread gathered."""

    def __init__(self, sock: socket.socket, mode: str):
        super().__init__(sock, mode)
        self.gathered = bytearray()

    def readinto(self, buffer) -> int | None:
        """Fill ``buffer`` from the gathered bytes first, then from the socket."""
        if self.gathered:
            count = min(len(buffer), len(self.gathered))
            buffer[:count] = self.gathered[:count]
            del self.gathered[:count]
            return count
        return super().readinto(buffer)


class _Reader(StreamReader):
    """Cheroot's socket reader over ``_GatheredFirstSocketIO``."""

    def __init__(self, sock: socket.socket, mode: str = "rb", bufsize: int = _pyio.DEFAULT_BUFFER_SIZE):
        _pyio.BufferedReader.__init__(self, _GatheredFirstSocketIO(sock, mode), bufsize)
        self.bytes_read = 0

    def unread(self) -> bytes:
        """Bytes received and not yet read: Cheroot's buffer (pipelined requests), then the gathered ones."""
        return bytes(self._read_buf[self._read_pos:]) + bytes(self.raw.gathered)  # Cheroot reads these too

    def has_data(self) -> bool:
        """Whether bytes were received and not yet read."""
        return super().has_data() or bool(self.raw.gathered)


class _Connection(HTTPConnection):
    """A connection that reads through ``_Reader`` and carries its head deadline."""

    head_deadline: float | None = None  # time.monotonic() by which the head must be whole
    draining = False  # refused: what the client still sends is read and dropped until it closes

    def __init__(self, server, sock: socket.socket, makefile=MakeFile):
        super().__init__(server, sock, makefile)
        self.rfile = _Reader(sock, "rb", self.rbufsize)


class _HeadGatherer(ConnectionManager):
    """Cheroot's selector loop, handing a connection to a worker only once its request head is whole."""

    def __init__(self, server: PicoServer):
        super().__init__(server)
        self.limit = server.max_request_header_size
        self.timeout = server.header_timeout

    def put(self, conn: _Connection) -> None:
        """A worker is done with a kept-alive connection: wait for its next head."""
        conn.last_used = time.time()
        conn.head_deadline = None  # the deadline starts at the next head's first byte
        if conn.rfile.has_data():
            self.gather(conn)  # pipelined: the next head may be whole already
        else:
            self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)

    def gather(self, conn: _Connection) -> None:
        """Take what has arrived on ``conn`` without blocking; hand it to a worker once its head is whole."""
        sock = conn.socket
        conn.last_used = time.time()
        if conn.head_deadline is None:
            conn.head_deadline = time.monotonic() + self.timeout
        try:
            # One read(2), no settimeout: Cheroot gives every connection a timeout, and a socket with a
            # timeout is non-blocking at the OS level. (Each system call hands the GIL over, and this
            # thread serves every connection.)
            received = os.read(sock.fileno(), RECEIVE_BYTES if conn.draining
                               else self.limit + 1 - len(conn.rfile.raw.gathered))
        except (BlockingIOError, InterruptedError):
            received = None
        except OSError:
            conn.close()
            return
        if received == b"":  # the client closed its end
            conn.close()
            return
        if conn.draining:
            self._selector.register(sock.fileno(), selectors.EVENT_READ, data=conn)
            return
        if received:
            conn.rfile.raw.gathered += received
        head = conn.rfile.unread()
        end = _head_end(head)
        if (end if end is not None else len(head)) > self.limit:
            self.refuse(conn, self._too_large(head), head)
        elif end is not None:
            conn.head_deadline = None
            self.server.hand_to_worker(conn)
        else:
            self._selector.register(sock.fileno(), selectors.EVENT_READ, data=conn)

    def _too_large(self, head: bytes) -> PicoError:
        """414 when the request line alone is over the limit, else 431."""
        kib = self.limit // 1024
        if b"\r\n" not in head[:self.limit]:
            return UriTooLong(f"The request line is over {kib} KiB", hint="Send long data in a request body.")
        return HeadersTooLarge(f"The request line and headers are over {kib} KiB (--max-header-kb)",
                               hint="Send fewer or shorter headers (cookies?).")

    def refuse(self, conn: _Connection, error: PicoError, head: bytes) -> None:
        """Answer ``error`` in the protocol of the path asked for, then drop what the client still sends."""
        log.info("%s from %s: %s", error.status, conn.remote_addr, error.message)
        sock = conn.socket
        status, headers, body = render(error, style_for(_path(head)))
        payload = json.dumps(body).encode()
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                 f"Content-Length: {len(payload)}", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers.items())]
        try:
            sock.settimeout(0)
            sock.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        # Closing with unread bytes would reset the connection and the client could lose the answer.
        conn.rfile.raw.gathered.clear()
        conn.draining = True
        conn.head_deadline = time.monotonic() + DRAIN_SECONDS
        self._selector.register(sock.fileno(), selectors.EVENT_READ, data=conn)

    def _expire(self, threshold: float) -> None:
        """Cheroot's idle timeout, then the head deadline: 408 for a late head, close a drained one."""
        super()._expire(threshold)
        now = time.monotonic()
        late = [conn for _, conn in list(self._selector.connections)
                if conn is not self.server and conn.head_deadline is not None and conn.head_deadline < now]
        for conn in late:
            self._selector.unregister(conn.socket.fileno())
            if conn.draining:
                conn.close()
            else:
                self.refuse(conn, RequestTimeout(
                    f"The request line and headers did not arrive within {self.timeout} s (--header-timeout)"),
                    conn.rfile.unread())


def _head_end(data: bytes) -> int | None:
    """Where the head in ``data`` ends (just after its blank line), or None while it is not whole.

    A bare-LF blank line ends it too: Cheroot then answers 400 at once rather than waiting for the deadline.
    """
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := data.find(mark)) != -1]
    return min(ends) if ends else None


def _path(head: bytes) -> str:
    """The path of a request line, as far as it arrived ("/" when it is not there)."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) > 1 else "/"


class PicoServer(wsgi.Server):
    """Cheroot's WSGI server whose worker threads only ever get connections with a whole request head."""

    ConnectionClass = _Connection

    def __init__(self, bind_addr, app, *, max_header_bytes: int, header_timeout: float, **options):
        super().__init__(bind_addr, app, **options)
        if not self.timeout or self.timeout <= 0:
            raise ValueError("PicoServer needs a socket timeout: the head gatherer relies on non-blocking sockets")
        self.max_request_header_size = max_header_bytes  # Cheroot's own check stays, behind the gatherer's
        self.header_timeout = header_timeout

    def prepare(self) -> None:
        """Bind and listen, then replace Cheroot's connection manager with the head gatherer."""
        super().prepare()
        self._connections._selector.close()  # Cheroot's manager was never run: nothing else holds it
        self._connections = _HeadGatherer(self)

    def process_conn(self, conn: _Connection) -> None:
        """A new or readable connection: gather its head (the worker pool gets it once whole)."""
        self._connections.gather(conn)

    def hand_to_worker(self, conn: _Connection) -> None:
        """Queue a connection whose head is whole for a worker thread."""
        super().process_conn(conn)
