"""Text embedded in image files, read without decoding a pixel.

PNG chunks are walked here by hand: tEXt, zTXt and iTXt anywhere in the file are read, IDAT is
skipped unread. (Pillow's ``PngImageFile.text`` decodes the whole image to reach text after the
pixels, and ``info`` holds only the chunks before them.) JPEG and WebP go through Pillow's
header read, which never decodes pixels: AUTOMATIC1111 keeps its infotext there in the EXIF
UserComment. The size comes from the header and is checked before anything else.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

from pico.errors import InvalidRequest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT_BYTES = 1 << 20  # one text after decompression (Pillow's MAX_TEXT_CHUNK)
MAX_ALL_TEXT_BYTES = 8 << 20  # all the text of one file
MAX_CHUNKS = 100_000  # encoders write IDAT in blocks of 8 to 64 KiB: a 32 MB file has at most a few thousand
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
# EXIF UserComment's 8-byte character code, decoded as piexif (and so A1111) decodes it.
COMMENT_CODES = {b"ASCII\0\0\0": "ascii", b"JIS\0\0\0\0\0": "shift_jis", b"UNICODE\0": "utf_16_be"}


@dataclass(frozen=True)
class EmbeddedText:
    """An image's size and the text it carries, by keyword."""

    width: int
    height: int
    text: dict[str, str] = field(default_factory=dict)


def read_embedded_text(data: bytes, max_pixels: int, field: str = "image") -> EmbeddedText:
    """The text a PNG, JPEG or WebP file carries; InvalidRequest naming ``field`` for anything else or too big."""
    if data.startswith(PNG_SIGNATURE):
        return read_png_text(data, max_pixels, field)
    return _read_exif_comment(data, max_pixels, field)


def read_png_text(data: bytes, max_pixels: int, field: str = "image") -> EmbeddedText:
    """Every text chunk of a PNG, wherever it lies; the pixels are never decompressed.

    Refuses (InvalidRequest naming ``field``) a file that is not a PNG, is truncated or corrupt,
    is over ``max_pixels`` by its header, or holds more text than the caps allow.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidRequest(f"{field} is not a PNG file", field=field)
    view = memoryview(data)
    width = height = 0
    text: dict[str, str] = {}
    total = 0
    position = len(PNG_SIGNATURE)
    for count in range(MAX_CHUNKS):
        if position + 12 > len(data):
            raise InvalidRequest(f"{field} is a truncated PNG: it ends before its last chunk", field=field)
        length, kind = struct.unpack_from(">I4s", data, position)
        start, end = position + 8, position + 8 + length
        if length > 0x7FFFFFFF or end + 4 > len(data):
            raise InvalidRequest(f"{field} is a truncated PNG: a {_name(kind)} chunk runs past the end",
                                 field=field)
        if count == 0:
            if kind != b"IHDR" or length != 13:
                raise InvalidRequest(f"{field} is not a valid PNG: it does not start with its header", field=field)
            _check_crc(view, position, end, field)
            width, height = struct.unpack_from(">II", data, start)
            _check_size(width, height, max_pixels, field)
        elif kind in TEXT_CHUNKS:
            _check_crc(view, position, end, field)
            found = _text_chunk(kind, bytes(view[start:end]), field)
            if found:
                total += len(found[1])
                if total > MAX_ALL_TEXT_BYTES:
                    raise InvalidRequest(f"{field} carries more than {MAX_ALL_TEXT_BYTES >> 20} MB of text",
                                         field=field)
                text[found[0]] = found[1]
        elif kind == b"IEND":
            return EmbeddedText(width, height, text)
        position = end + 4
    raise InvalidRequest(f"{field} has more than {MAX_CHUNKS:,} PNG chunks", field=field)


def _name(kind: bytes) -> str:
    return kind.decode("latin-1") if kind.isalpha() else repr(kind)


def _check_crc(view: memoryview, position: int, end: int, field: str) -> None:
    stored = struct.unpack_from(">I", view, end)[0]
    if zlib.crc32(view[position + 4:end]) != stored:
        kind = bytes(view[position + 4:position + 8])
        raise InvalidRequest(f"{field} is a corrupt PNG: its {_name(kind)} chunk fails its checksum", field=field)


def _check_size(width: int, height: int, max_pixels: int, field: str) -> None:
    if width == 0 or height == 0:
        raise InvalidRequest(f"{field} is a PNG of {width}x{height} pixels", field=field)
    if width * height > max_pixels:
        raise InvalidRequest(
            f"{field} is {width}x{height} ({width * height:,} pixels); the limit is {max_pixels:,} pixels",
            field=field, hint="Scale the image down before sending it.",
        )


def _text_chunk(kind: bytes, body: bytes, field: str) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk, as Pillow reads them; None for a malformed one."""
    keyword, sep, rest = body.partition(b"\0")
    if not sep or not keyword:
        return None
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        if rest[:1] != b"\0":  # 0 is the only compression method PNG defines
            return None
        return key, _inflate(rest[1:], field).decode("latin-1")
    if len(rest) < 2:
        return None
    compressed, method, rest = rest[0], rest[1], rest[2:]
    _language, sep1, rest = rest.partition(b"\0")
    _translated, sep2, value = rest.partition(b"\0")
    if not (sep1 and sep2) or compressed not in (0, 1) or (compressed and method != 0):
        return None
    if compressed:
        value = _inflate(value, field)
    try:
        return key, value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _inflate(compressed: bytes, field: str) -> bytes:
    """zlib data decompressed up to MAX_TEXT_BYTES; InvalidRequest beyond that or when corrupt."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(compressed, MAX_TEXT_BYTES + 1)
    except zlib.error:
        raise InvalidRequest(f"{field} is a corrupt PNG: a compressed text chunk does not decompress",
                             field=field) from None
    if len(out) > MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise InvalidRequest(f"{field} has a text chunk over {MAX_TEXT_BYTES >> 20} MB once decompressed",
                             field=field)
    return out


def _read_exif_comment(data: bytes, max_pixels: int, field: str) -> EmbeddedText:
    """A JPEG's or WebP's EXIF UserComment as its "parameters", read from the header alone (never load())."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the size is checked below; EXIF warnings would fill the log
            image = Image.open(io.BytesIO(data), formats=("JPEG", "WEBP"))
        width, height = image.size
    except UnidentifiedImageError:
        raise InvalidRequest(f"{field} is not a PNG, JPEG or WebP image", field=field) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"{field} is far over the limit of {max_pixels:,} pixels", field=field) from None
    except (OSError, ValueError, SyntaxError, struct.error):
        raise InvalidRequest(f"{field} is a damaged JPEG or WebP file", field=field) from None
    _check_size(width, height, max_pixels, field)
    comment = _user_comment(image.info.get("exif"))
    if comment is None and isinstance(image.info.get("comment"), bytes):  # A1111 falls back to a JPEG comment
        comment = image.info["comment"].decode("utf-8", errors="ignore")
    return EmbeddedText(width, height, {"parameters": comment} if comment else {})


def _user_comment(exif: bytes | None) -> str | None:
    """EXIF UserComment decoded as piexif's UserComment.load does, with A1111's UTF-8 fallback."""
    if not exif:
        return None
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns about each corrupt tag; the texts, chosen by the sender, would fill the log.
            warnings.simplefilter("ignore")
            value = Image.Exif()
            value.load(exif)
            raw = value.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (SyntaxError, struct.error, ValueError, OSError, KeyError, IndexError, TypeError, EOFError):
        return None  # malformed EXIF: A1111 then finds no comment either
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or not raw:
        return None
    encoding = COMMENT_CODES.get(raw[:8])
    if encoding is None:
        return raw.decode("utf-8", errors="ignore")
    return raw[8:].decode(encoding, errors="replace")
