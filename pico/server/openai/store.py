"""Images kept for response_format=url: an hour each, in a bounded amount of memory."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable

from pico.errors import NotFound

URL_TTL_SECONDS = 3600  # OpenAI's image URLs last an hour too
URL_STORE_BYTES = 256 * 1024 * 1024  # what response_format=url may hold in memory


class ResultStore:
    """Encoded images for response_format=url: kept an hour, the oldest dropped beyond URL_STORE_BYTES."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_bytes: int = URL_STORE_BYTES) -> None:
        self._items: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._clock, self._max_bytes = clock, max_bytes  # tests pass their own clock and bound

    def put(self, data: bytes, fmt: str) -> str:
        """Store an image; returns its token."""
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._items[token] = (self._clock() + URL_TTL_SECONDS, fmt, data)
            self._bytes += len(data)
            while self._bytes > self._max_bytes and len(self._items) > 1:
                self._bytes -= len(self._items.popitem(last=False)[1][2])
        return token

    def get(self, token: str) -> tuple[str, bytes]:
        """(format, bytes) of a stored image; NotFound once expired."""
        with self._lock:
            now = self._clock()
            for key in [k for k, (expires, _, _) in self._items.items() if expires < now]:
                self._bytes -= len(self._items.pop(key)[2])
            item = self._items.get(token)
        if item is None:
            raise NotFound("This image URL has expired or never existed; image URLs last one hour")
        return item[1], item[2]
