"""PNG files written chunk by chunk, for tests of readers that must not decode pixels."""

from __future__ import annotations

import functools
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=8)
def _black_idat(width: int, height: int, block: int) -> tuple[bytes, ...]:
    """IDAT chunks of a black RGB image, compressed row by row so the pixels never sit in memory at once."""
    compressor = zlib.compressobj(9)
    row = b"\x04" + bytes(3 * width)  # the Paeth filter (the costliest to undo), then black pixels
    stream = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return tuple(chunk(b"IDAT", stream[i:i + block]) for i in range(0, len(stream), block))


def huge_png(width: int = 12000, height: int = 12000, before: list[bytes] = (), after: list[bytes] = (),
             block: int = 65536) -> bytes:
    """A black RGB PNG (12000x12000 is about 0.4 MB), with extra chunks before and after its pixels."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"".join([SIGNATURE, header, *before, *_black_idat(width, height, block), *after, chunk(b"IEND", b"")])
