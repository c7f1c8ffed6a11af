"""Read a safetensors file's header (tensor names, dtypes, shapes, metadata) without touching tensor data.

A safetensors file is an 8-byte little-endian header length, that many bytes of JSON, then the
tensor bytes. Everything here reads only the first two parts and checks them the way the
safetensors library will when the file is loaded, so a truncated download or a file that is not
safetensors at all is reported as broken, with a reason, before anything tries to load it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100_000_000  # the safetensors library refuses larger headers too


class BrokenFile(Exception):
    """The file is not a readable safetensors file; ``reason`` says why in a user's terms."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the header."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header: tensors by name, the ``__metadata__`` strings, where tensor data starts."""

    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]
    data_offset: int


def header_length(prefix: bytes) -> int:
    """The JSON header's length from a file's first 8 bytes (little-endian u64)."""
    return int.from_bytes(prefix[:8], "little")


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse the header of ``path``; raise :class:`BrokenFile` for anything the loader would reject."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < 8:
                raise BrokenFile(f"the file is {size} bytes, too short for a safetensors header")
            length = header_length(file.read(8))
            if length > MAX_HEADER_BYTES:
                raise BrokenFile(f"the header claims {length:,} bytes, over the {MAX_HEADER_BYTES:,}-byte limit")
            if length > size - 8:
                raise BrokenFile(f"the header claims {length:,} bytes but the file has only {size - 8:,} after "
                                 "the length: truncated, or not a safetensors file")
            raw = file.read(length)
    except OSError as exc:
        raise BrokenFile(f"the file cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) != length:
        raise BrokenFile("the file changed or shrank while its header was read")
    return _parse(raw, data_size=size - 8 - length, data_offset=8 + length)


def _parse(raw: bytes, data_size: int, data_offset: int) -> SafetensorsHeader:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BrokenFile("the header is not valid JSON: not a safetensors file") from None
    if not isinstance(header, dict):
        raise BrokenFile("the header is not a JSON object: not a safetensors file")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BrokenFile("the header's __metadata__ is not a map of strings")
    tensors = {}
    for name, entry in header.items():
        tensors[name] = _tensor(name, entry, data_size)
    return SafetensorsHeader(tensors=tensors, metadata=metadata, data_offset=data_offset)


def _tensor(name: str, entry: object, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise BrokenFile(f"tensor {name!r} has no dtype/shape/offsets entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not _ints(shape) or not _ints(offsets) or len(offsets) != 2:
        raise BrokenFile(f"tensor {name!r} has a malformed dtype, shape or data_offsets")
    begin, end = offsets
    if begin > end:
        raise BrokenFile(f"tensor {name!r} has data_offsets that run backwards")
    if end > data_size:
        raise BrokenFile(f"tensor {name!r} ends past the end of the file: truncated (an incomplete download?)")
    return TensorInfo(dtype=dtype, shape=tuple(shape))


def _ints(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
