"""Images at the edges: base64 in, PNG/JPEG/WebP out, generation parameters embedded in files."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from pico.catalog.samplers import a1111_names
from pico.errors import InvalidRequest
from pico.schemas.png import encode_png

FORMATS = ("png", "jpeg", "webp")
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PICO_CHUNK = "pico"  # PNG text chunk holding the JSON request and seed
A1111_CHUNK = "parameters"  # the AUTOMATIC1111 chunk image browsers show
_URLSAFE = str.maketrans("-_", "+/")
ENCODE_THREADS = min(8, os.cpu_count() or 1)  # the images of one answer encode at once, up to this many
_encoders: ThreadPoolExecutor | None = None
_encoders_lock = threading.Lock()


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
    checkpoint = meta.get("Checkpoint") or {}
    loras = meta.get("Loras") or []
    sampler, schedule = a1111_names(meta["Scheduler"]) if meta.get("Scheduler") else (None, None)
    hires = meta.get("Hires") or {}
    parts = [
        ("Steps", meta.get("Quality")),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", meta.get("GuidanceScale")),
        ("Seed", meta.get("Seed")),
        ("Size", f"{meta['Width']}x{meta['Height']}" if meta.get("Width") else None),
        ("Model hash", checkpoint.get("Hash") or None),
        ("Model", _stem(checkpoint["Name"]) if checkpoint.get("Name") else meta.get("Model")),
        ("Denoising strength", meta.get("Strength", hires.get("Strength"))),
        ("Clip skip", meta.get("ClipSkip") if (meta.get("ClipSkip") or 1) > 1 else None),
        ("Lora hashes", _quoted(", ".join(f"{_stem(lora['Name'])}: {lora['Hash']}" for lora in loras
                                           if lora.get("Hash"))) if loras else None),
    ]
    if hires:  # A1111's hires fix keys
        resize = f"{hires.get('Width') or 0}x{hires.get('Height') or 0}"
        parts += [("Hires resize", resize) if hires.get("Width") or hires.get("Height") else
                  ("Hires upscale", hires.get("Scale")),
                  ("Hires steps", hires.get("Steps")), ("Hires upscaler", hires.get("Upscaler"))]
    lines.append(", ".join(f"{k}: {v}" for k, v in parts if v is not None))
    return "\n".join(lines)


def _stem(name: str) -> str:
    """A file's name as A1111 writes it in infotexts: no folders, no extension (``sdxl/juggernaut.safetensors``
    -> ``juggernaut``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if base.lower().endswith((".safetensors", ".ckpt", ".pt", ".bin", ".pth")) else base


def _quoted(text: str) -> str | None:
    """A value as A1111 writes it in the key/value line: JSON-quoted when it holds a comma, colon or quote."""
    if not text:
        return None
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:"') else text


def encode_image(image: Image.Image, fmt: str = "png", parameters: dict | None = None,
                 compress_level: int = 1) -> bytes:
    """Encode an image as png, jpeg or webp; PNGs carry ``parameters`` as JSON and A1111 text chunks."""
    if fmt == "png":
        text = []
        if parameters is not None:
            text = [(PICO_CHUNK, json.dumps(parameters, ensure_ascii=False)),
                    (A1111_CHUNK, a1111_parameters(parameters.get("Metadata", parameters)))]
        return encode_png(image, text, compress_level)
    out = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(out, format="JPEG", quality=92)
    elif fmt == "webp":
        image.save(out, format="WEBP", quality=92)
    else:
        raise InvalidRequest(f"OutputFormat must be one of {', '.join(FORMATS)}, got {fmt!r}", field="OutputFormat")
    return out.getvalue()


def encode_images(images: Sequence[Image.Image], fmt: str, parameters: Sequence[dict | None],
                  compress_level: int = 1) -> list[bytes]:
    """Each image encoded as by ``encode_image`` (with its own parameters), all at once on encoder threads.

    The encoders (ISA-L, zlib, NumPy, Pillow) release the GIL, so an answer of several images
    takes about as long as its largest one where cores are free. One image encodes on the
    calling thread.
    """
    if len(images) != len(parameters):
        raise ValueError(f"{len(images)} images but {len(parameters)} parameter sets")
    if len(images) <= 1 or ENCODE_THREADS == 1:
        return [encode_image(image, fmt, params, compress_level) for image, params in zip(images, parameters)]
    futures = [_encoder_pool().submit(encode_image, image, fmt, params, compress_level)
               for image, params in zip(images, parameters)]
    return [future.result() for future in futures]


def _encoder_pool() -> ThreadPoolExecutor:
    global _encoders
    with _encoders_lock:
        if _encoders is None:
            _encoders = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="pico-encode")
        return _encoders


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
