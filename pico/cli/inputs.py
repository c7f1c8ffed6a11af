"""Input image files: read, checked with the option that named them, base64-encoded into a request body.

The CLI and batch files take image inputs as file paths; the request types take base64,
as on the REST API. The files are not embedded in the images PICO writes: their paths and
SHA-256 are (under "Inputs"), so ``pico again`` can read them again and tell when one
is missing or changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pico.errors import InvalidRequest
from pico.schemas.fields import image_fields, spec_of, wire_name


@dataclass(frozen=True)
class InputImage:
    """The bytes of one input image, and where they came from."""

    wire: str  # the request field it fills: ImageBase64
    data: bytes
    path: Path | None = None  # None for a base64 value written inline in a batch file
    origin: dict[str, Any] | None = None  # for inline values: {"Batch": file, "Line": n}

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes."""
        return hashlib.sha256(self.data).hexdigest()

    def record(self) -> dict[str, Any]:
        """What an output image carries about this input, so that it can be found and checked again."""
        where = {"Path": str(self.path)} if self.path is not None else dict(self.origin or {})
        return {**where, "Sha256": self.sha256, "Bytes": len(self.data)}


def read_file(path: Path, label: str) -> bytes:
    """The bytes of an input file; InvalidRequest naming ``label`` (the option or key) when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"{label}: no such file: {path}", field=label) from None
    except IsADirectoryError:
        raise InvalidRequest(f"{label}: {path} is a folder, not an image file", field=label) from None
    except OSError as exc:
        raise InvalidRequest(f"{label}: cannot read {path}: {exc.strerror or exc}", field=label) from None


def read_input(path: Path, wire: str, label: str, request_type: type, max_pixels: int) -> InputImage:
    """Read and decode-check one input image file given as ``label`` (``--image`` or ``Image``)."""
    path = path.expanduser().resolve()
    data = read_file(path, label)
    check_image(data, wire, f"{label} {path.name}", request_type, max_pixels)
    return InputImage(wire, data, path)


def check_image(data: bytes, wire: str, label: str, request_type: type, max_pixels: int) -> None:
    """Decode the image once, so an unreadable file is reported with its option and name, not as base64."""
    from pico.schemas.images import open_image

    open_image(data, label, max_pixels, image_mode(request_type, wire))


def image_mode(request_type: type, wire: str) -> str:
    """The PIL mode the request type decodes field ``wire`` into (RGB, or L for masks)."""
    for f in image_fields(request_type):
        if wire_name(f.name) == wire:
            return spec_of(f).image or "RGB"
    return "RGB"


def with_images(body: dict[str, Any], images: list[InputImage]) -> dict[str, Any]:
    """The body with each input image base64-encoded into its field."""
    from pico.schemas.images import to_base64

    return {**body, **{image.wire: to_base64(image.data) for image in images}}


def records(images: list[InputImage]) -> dict[str, Any]:
    """The "Inputs" entry of the embedded parameters: field -> where the file was and its hash."""
    return {image.wire: image.record() for image in images}


def recorded_input(wire: str, record: Any, request_type: type, max_pixels: int) -> InputImage:
    """Read an input again from what an image file recorded; InvalidRequest if it is missing or changed."""
    from pico.cli.batchfile import inline_value

    if not isinstance(record, dict) or not isinstance(record.get("Sha256"), str):
        raise InvalidRequest(f"the recorded input {wire} is damaged: {record!r}", field=wire)
    if "Path" in record:
        path = Path(record["Path"])
        data = read_file(path, f"input {wire}")
        where = str(path)
    else:
        batch, line = Path(record.get("Batch", "")), record.get("Line")
        data = inline_value(batch, line, wire)
        where = f"{wire} on line {line} of {batch}"
        path = None
    image = InputImage(wire, data, path, None if path else {"Batch": str(batch), "Line": line})
    if image.sha256 != record["Sha256"]:
        raise InvalidRequest(
            f"input {where} changed since the image was made (its SHA-256 differs)", field=wire,
            hint="Restore the original file to regenerate the identical image.",
        )
    check_image(data, wire, f"input {where}", request_type, max_pixels)
    return image
