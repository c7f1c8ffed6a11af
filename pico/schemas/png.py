"""PNG files written fast: NumPy filters the rows, ISA-L deflates them, text chunks as Pillow writes them.

Pillow's PNG encoder spends a 512x512 photograph's ~25 ms choosing a filter for every row and
deflating with zlib; ISA-L (the ``isal`` package) deflates the same image, Up-filtered, in ~2.5 ms
to the same size, and releases the GIL, so the images of one answer encode in parallel
(``BENCHMARKS.md``, ``benchmarks/encode.py``). What ``compress_level`` (``PICO_PNG_COMPRESS_LEVEL``) does:

- 0: stored, neither filtered nor compressed: the raw pixels' size, fastest (stdlib zlib);
- 1 to 3: Up filter, then ISA-L deflate at that level (1, the default; 2 and 3 gain under 1 %);
- 4 to 9: Pillow at that level (zlib, a filter chosen per row): about 10 % smaller photographs,
  3 to 15 times slower.

Pillow writes the file whenever this writer cannot: levels 1 to 3 without ``isal`` (a platform it
has no wheel for), modes other than L, LA, RGB and RGBA, and images carrying an ICC profile or a
transparency colour. Either way the file holds IHDR, one iTXt chunk per text entry (byte for
byte as Pillow's ``PngInfo.add_itxt`` writes it), the image data, IEND.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, PngImagePlugin

try:
    from isal import isal_zlib
except ImportError:  # no wheel for this platform, or a broken install: Pillow encodes instead
    isal_zlib = None

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}  # 8 bits per sample
FILTER_NONE, FILTER_UP = 0, 2
FAST_LEVELS = (1, 2, 3)  # ISA-L's levels
ENCODER = "isal" if isal_zlib is not None else "pillow"  # what writes levels 1-3 here
_crc32 = isal_zlib.crc32 if isal_zlib is not None else zlib.crc32  # ISA-L's is ~10x faster on a 3 MB IDAT


def encode_png(image: Image.Image, text: Sequence[tuple[str, str]] = (), compress_level: int = 1) -> bytes:
    """``image`` as a PNG with ``text`` as iTXt chunks, by the fast writer where it can, else by Pillow."""
    if not 0 <= compress_level <= 9:
        raise ValueError(f"PNG compress level must be 0 to 9, got {compress_level}")
    if _fast_writer_fits(image, compress_level):
        return write_png(np.asarray(image), COLOR_TYPES[image.mode], text, compress_level)
    return pillow_png(image, text, compress_level)


def _fast_writer_fits(image: Image.Image, compress_level: int) -> bool:
    if image.mode not in COLOR_TYPES or "icc_profile" in image.info or "transparency" in image.info:
        return False
    return compress_level == 0 or (compress_level in FAST_LEVELS and isal_zlib is not None)


def write_png(pixels: np.ndarray, color_type: int, text: Sequence[tuple[str, str]], compress_level: int) -> bytes:
    """A PNG of 8-bit ``pixels`` (height x width [x channels]): level 0 stored, 1-3 Up filter + ISA-L."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    if compress_level == 0:
        idat = zlib.compress(memoryview(_filtered(rows, FILTER_NONE)).cast("B"), 0)
    else:
        idat = isal_zlib.compress(memoryview(_filtered(rows, FILTER_UP)).cast("B"), compress_level)
    parts = [SIGNATURE]
    parts += _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    for key, value in text:
        parts += _chunk(b"iTXt", itxt_data(key, value))
    parts += _chunk(b"IDAT", idat)
    parts += _chunk(b"IEND", b"")
    return b"".join(parts)


def _filtered(rows: np.ndarray, filter_type: int) -> np.ndarray:
    """Scanlines as PNG stores them: each row's filter-type byte, then the row filtered (bytes wrap mod 256)."""
    height, row_bytes = rows.shape
    out = np.empty((height, row_bytes + 1), np.uint8)
    out[:, 0] = filter_type
    if filter_type == FILTER_UP:  # each byte minus the one above it; the first row has zeros above
        out[0, 1:] = rows[0]
        np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    else:
        out[:, 1:] = rows
    return out


def itxt_data(key: str, value: str) -> bytes:
    """An uncompressed iTXt chunk's data, as Pillow's ``PngInfo.add_itxt(key, value)`` writes it."""
    return key.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + value.encode("utf-8")


def _chunk(kind: bytes, data: bytes) -> list[bytes]:
    return [struct.pack(">I", len(data)) + kind, data, struct.pack(">I", _crc32(data, _crc32(kind)))]


def pillow_png(image: Image.Image, text: Sequence[tuple[str, str]], compress_level: int) -> bytes:
    """``image`` as a PNG written by Pillow (zlib at ``compress_level``), with ``text`` as iTXt chunks."""
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text:
            info.add_itxt(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=compress_level)
    return out.getvalue()
