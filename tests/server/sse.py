"""A small Server-Sent Events client for the tests: events are read as they come, the socket can be dropped."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass
class Event:
    name: str
    data: Any


class EventStream:
    """One request whose answer is read event by event (``status``/``headers`` first; ``body`` when not a stream)."""

    def __init__(self, port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 120):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        all_headers = {"Accept": "text/event-stream"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        self.connection.request(method, path, body=payload, headers=all_headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.body = b"" if self.is_stream else self.response.read()
        self.comments = 0

    @property
    def is_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __iter__(self) -> Iterator[Event]:
        name, data = "message", []
        while True:
            line = self.response.readline()
            if not line:
                return
            text = line.decode("utf-8").rstrip("\r\n")
            if text == "":
                if data:
                    yield Event(name, json.loads("\n".join(data)))
                name, data = "message", []
            elif text.startswith(":"):
                self.comments += 1
            elif text.startswith("event:"):
                name = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].lstrip(" "))

    def until(self, name: str) -> list[Event]:
        """Events up to and including the first one called ``name``."""
        seen = []
        for event in self:
            seen.append(event)
            if event.name == name:
                return seen
        raise AssertionError(f"the stream ended before a {name!r} event; got {[e.name for e in seen]}")

    def all(self) -> list[Event]:
        return list(self)

    def drop(self) -> None:
        """Go away without reading the rest: close the socket."""
        sock = self.connection.sock
        self.response.close()
        if sock is not None:
            sock.close()
        self.connection.close()
