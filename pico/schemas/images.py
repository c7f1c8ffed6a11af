"""Images at the edges: base64 in, PNG/JPEG/WebP out, generation parameters embedded in files."""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from typing import Any

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from pico.errors import InvalidRequest

FORMATS = ("png", "jpeg", "webp")
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PICO_CHUNK = "pico"  # PNG text chunk holding the JSON request and seed
A1111_CHUNK = "parameters"  # the AUTOMATIC1111 chunk image browsers show
_URLSAFE = str.maketrans("-_", "+/")


def decode_base64(value: str, field: str) -> bytes:
    """Bytes of a base64 string, raw or as a ``data:`` URL; InvalidRequest naming ``field`` if it does not decode."""
    text = value.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise InvalidRequest(f"{field} is a data: URL that is not base64-encoded", field=field)
    text = "".join(text.split()).translate(_URLSAFE)
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is not valid base64", field=field) from None
    if not data:
        raise InvalidRequest(f"{field} is empty", field=field)
    return data


def open_image(data: bytes, field: str, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """Decode image bytes into a ``mode`` image, refusing non-images and anything over ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidRequest(
                    f"{field} is {width}x{height} ({width * height:,} pixels); the limit is {max_pixels:,} pixels",
                    field=field, hint="Scale the image down before sending it.",
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert(mode)
    except InvalidRequest:
        raise
    except UnidentifiedImageError:
        raise InvalidRequest(
            f"{field} is not an image in a format PICO can read (PNG, JPEG, WebP, ...)", field=field
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"{field} is far over the limit of {max_pixels:,} pixels and was not decoded "
                             "(a decompression bomb?)", field=field) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(f"{field} could not be decoded as an image: {exc}", field=field) from None


def decode_image(value: str, field: str, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """A base64 field decoded into an image."""
    return open_image(decode_base64(value, field), field, max_pixels, mode)


def a1111_parameters(meta: dict[str, Any]) -> str:
    """Generation parameters in AUTOMATIC1111's text form, which common image browsers display."""
    lines = []
    if meta.get("Phrase"):
        lines.append(meta["Phrase"])
    if meta.get("NegativePhrase"):
        lines.append(f"Negative prompt: {meta['NegativePhrase']}")
    parts = [
        ("Steps", meta.get("Quality")),
        ("Sampler", meta.get("Scheduler")),
        ("CFG scale", meta.get("GuidanceScale")),
        ("Seed", meta.get("Seed")),
        ("Size", f"{meta['Width']}x{meta['Height']}" if meta.get("Width") else None),
        ("Model", meta.get("Model")),
        ("Denoising strength", meta.get("Strength")),
    ]
    lines.append(", ".join(f"{k}: {v}" for k, v in parts if v is not None))
    return "\n".join(lines)


def encode_image(image: Image.Image, fmt: str = "png", parameters: dict | None = None,
                 compress_level: int = 1) -> bytes:
    """Encode an image as png, jpeg or webp; PNGs carry ``parameters`` as JSON and A1111 text chunks."""
    out = io.BytesIO()
    if fmt == "png":
        info = None
        if parameters is not None:
            info = PngImagePlugin.PngInfo()
            info.add_itxt(PICO_CHUNK, json.dumps(parameters, ensure_ascii=False))
            info.add_itxt(A1111_CHUNK, a1111_parameters(parameters.get("Metadata", parameters)))
        image.save(out, format="PNG", pnginfo=info, compress_level=compress_level)
    elif fmt == "jpeg":
        image.convert("RGB").save(out, format="JPEG", quality=92)
    elif fmt == "webp":
        image.save(out, format="WEBP", quality=92)
    else:
        raise InvalidRequest(f"OutputFormat must be one of {', '.join(FORMATS)}, got {fmt!r}", field="OutputFormat")
    return out.getvalue()


def read_parameters(data: bytes) -> dict[str, Any]:
    """The parameters embedded in an image PICO wrote: {"pico": {...} or None, "parameters": str or None}."""
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest(f"not an image PICO can read: {exc}", field="image") from None
    text = getattr(image, "text", None) or image.info
    pico = text.get(PICO_CHUNK)
    try:
        parsed = json.loads(pico) if pico else None
    except json.JSONDecodeError:
        parsed = None
    return {"pico": parsed, "parameters": text.get(A1111_CHUNK)}


def to_base64(data: bytes) -> str:
    """ASCII base64 of ``data``."""
    return base64.b64encode(data).decode("ascii")


def embedded_parameters(pipeline: str, request: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """What an image file carries: the pipeline route, the request that reproduces it, the image's metadata.

    The request's Seed is pinned to the batch's first seed, so running that request again
    (same Total) remakes the same batch; the image is the one at metadata Index.
    """
    first_seed = (metadata["Seed"] - metadata.get("Index", 0)) % 2**32
    return {"Pipeline": pipeline, "Request": {**request, "Seed": first_seed}, "Metadata": metadata}
