"""Reading request bodies safely: size-limited, truncation detected, JSON decoded into an object."""

from __future__ import annotations

import json
from typing import Any

from pico.errors import MalformedRequest, PayloadTooLarge

DRAIN_LIMIT = 64 * 1024 * 1024  # an over-limit body up to this size is read and dropped before the 413


def read_body(environ: dict, max_bytes: int) -> bytes:
    """The raw body, refusing more than ``max_bytes`` (413) and bodies shorter than announced (400)."""
    stream = environ["wsgi.input"]
    length_header = environ.get("CONTENT_LENGTH") or ""
    limit_text = f"the limit is {max_bytes // (1024 * 1024)} MB (--max-body-mb)"
    if length_header:
        try:
            length = int(length_header)
        except ValueError:
            raise MalformedRequest(f"Content-Length is not a number: {length_header!r}") from None
        if length > max_bytes:
            _discard(stream, min(length, DRAIN_LIMIT))  # so the client, still sending, can read the 413
            raise PayloadTooLarge(f"The body is {length:,} bytes; {limit_text}")
        data = _read(stream, length)
        if len(data) < length:
            raise MalformedRequest(f"The body ended after {len(data):,} of the {length:,} bytes announced")
        return data
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        data = _read(stream, max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"The body is over {max_bytes:,} bytes; {limit_text}")
        return data
    return b""


def _discard(stream: Any, size: int) -> None:
    try:
        while size > 0:
            chunk = stream.read(min(size, 1 << 20))
            if not chunk:
                return
            size -= len(chunk)
    except (OSError, ValueError):
        pass


def _read(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    try:
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except (OSError, ValueError) as exc:
        raise MalformedRequest(f"The body could not be read: {exc}") from None
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    """Decode a JSON body; 400 for empty, invalid, non-UTF-8 or absurdly nested JSON (NaN and Infinity too)."""
    if not data.strip():
        raise MalformedRequest("The request body is empty; send a JSON object, e.g. {\"Phrase\": \"ginger cat\"}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise MalformedRequest("The request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                               f"column {exc.colno}") from None
    except RecursionError:
        raise MalformedRequest("The JSON body is nested too deeply") from None


def _no_constants(name: str) -> Any:
    raise MalformedRequest(f"The JSON body contains {name}, which is not valid JSON")
