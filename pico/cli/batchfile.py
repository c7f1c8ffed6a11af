"""Batch files: JSON Lines (or one JSON array) of jobs, each a REST request body plus "Pipeline".

Every job is checked before anything is generated: the JSON, the pipeline, the request
fields (by the same parse as the REST API), and the input images, given as file paths
("Image", "Mask": relative to the batch file's folder) or inline as base64 ("ImageBase64").
Bad lines are reported with their line numbers; the good ones become :class:`BatchJob` s.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico.cli.inputs import InputImage, read_input, with_images
from pico.cli.options import batch_key
from pico.errors import InvalidRequest, PicoError
from pico.schemas.fields import image_fields, wire_fields, wire_name

if TYPE_CHECKING:
    from pico.catalog.pipelines import PipelineInfo
    from pico.schemas.requests import GenerationRequest

BATCH_KEYS = ("Pipeline", "Id")
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ID = 80


@dataclass
class BatchJob:
    """One valid job of a batch file."""

    line: int
    id: str
    pipeline: PipelineInfo
    body: dict[str, Any]  # the request fields, without Pipeline, Id and the image path keys
    paths: dict[str, Path] = field(default_factory=dict)  # image field -> file
    fingerprint: str = ""  # what the job asks for: a changed job is never skipped as done

    def request(self, batch: Path, max_pixels: int) -> tuple[GenerationRequest, list[InputImage]]:
        """Read the job's input files and parse its request (again: files may change after validation)."""
        images = [read_input(path, wire, batch_key(wire), self.pipeline.request_type, max_pixels)
                  for wire, path in self.paths.items()]
        for f in image_fields(self.pipeline.request_type):
            wire = wire_name(f.name)
            if isinstance(self.body.get(wire), str):
                images.append(_inline(self.body[wire], wire, batch, self.line))
        return self.pipeline.request_type.parse(with_images(self.body, images), max_pixels=max_pixels), images


@dataclass
class BadLine:
    """A job that cannot run, and why."""

    line: int
    id: str | None
    error: PicoError

    def describe(self) -> str:
        """``line 3 (job-0003): Seed must be ...``."""
        who = f" ({self.id})" if self.id else ""
        return f"line {self.line}{who}: {self.error.message}"


def read_entries(path: Path) -> list[tuple[int, Any]]:
    """(line number, decoded JSON or the PicoError of a bad line) for each job of a batch file."""
    from pico.cli.inputs import read_file

    try:
        text = read_file(path, "FILE").decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}", field="FILE") from None
    if text.lstrip().startswith("["):
        return _array_entries(path, text)
    entries: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            entries.append((number, json.loads(stripped)))
        except json.JSONDecodeError as exc:
            entries.append((number, InvalidRequest(f"not valid JSON: {exc.msg} at column {exc.colno}")))
    return entries


def _array_entries(path: Path, text: str) -> list[tuple[int, Any]]:
    """The items of a JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    entries: list[tuple[int, Any]] = []
    position = text.index("[") + 1
    expect_item = True
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            raise _syntax(path, text, position, "the array is not closed with ]")
        char = text[position]
        if char == "]" and (expect_item is False or not entries):
            break
        if char == "," and not expect_item:
            position, expect_item = position + 1, True
            continue
        if not expect_item:
            raise _syntax(path, text, position, "expected , or ] between jobs")
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _syntax(path, text, exc.pos, exc.msg) from None
        entries.append((text.count("\n", 0, position) + 1, value))
        position, expect_item = end, False
    if text[position + 1:].strip():
        raise _syntax(path, text, position + 1, "text after the closing ]")
    return entries


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _syntax(path: Path, text: str, position: int, message: str) -> InvalidRequest:
    line = text.count("\n", 0, position) + 1
    return InvalidRequest(f"{path}: line {line}: not valid JSON: {message}", field="FILE")


def load_jobs(path: Path, max_pixels: int,
              check_model: Callable[[Any, str], Any] | None = None) -> tuple[list[BatchJob], list[BadLine]]:
    """Validate every job of a batch file: the runnable jobs, and the bad lines with their errors.

    ``check_model`` raises for a model the engine would refuse, so that is caught up front too.
    """
    entries = read_entries(path)
    if not entries:
        raise InvalidRequest(f"{path} holds no jobs", field="FILE",
                             hint='One JSON object per line: {"Pipeline": "stable-diffusion", "Phrase": "ginger cat"}')
    jobs: list[BatchJob] = []
    bad: list[BadLine] = []
    taken: dict[str, int] = {}
    for line, entry in entries:
        job_id = None
        try:
            if isinstance(entry, PicoError):
                raise entry
            job_id = job_id_of(entry, line)
            if job_id.lower() in taken:  # folders may be case-insensitive
                raise InvalidRequest(f"Id {job_id!r} is already used by line {taken[job_id.lower()]}", field="Id",
                                     hint="Each job needs its own Id: it names the job's output folder.")
            taken[job_id.lower()] = line
            jobs.append(check_job(entry, line, job_id, path, max_pixels, check_model))
        except PicoError as exc:
            bad.append(BadLine(line, job_id, exc))
    return jobs, bad


def job_id_of(entry: Any, line: int) -> str:
    """The job's folder name: its "Id" made safe for a file name, or job-NNNN after its line."""
    if not isinstance(entry, dict):
        kind = "an array" if isinstance(entry, list) else type(entry).__name__
        raise InvalidRequest(f"a job must be a JSON object, got {kind}")
    raw = entry.get("Id")
    if raw is None:
        return f"job-{line:04d}"
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidRequest(f"Id must be a string or a number, got {json.dumps(raw)}", field="Id")
    safe = SAFE_ID.sub("-", str(raw)).strip(".-")[:MAX_ID]
    if not safe:
        raise InvalidRequest(f"Id {raw!r} has no letters or digits to name a folder with", field="Id")
    return safe


def check_job(entry: dict[str, Any], line: int, job_id: str, batch: Path, max_pixels: int,
              check_model: Callable[[Any, str], Any] | None = None) -> BatchJob:
    """One job validated as the REST API would, plus its file inputs; raises a PicoError when bad."""
    from pico.catalog.pipelines import PIPELINES, find_pipeline

    if "Pipeline" not in entry:
        raise InvalidRequest("Pipeline is required: one of " + ", ".join(r.route for r in PIPELINES), field="Pipeline")
    pipeline = find_pipeline(str(entry["Pipeline"]))
    body = {k: v for k, v in entry.items() if k not in BATCH_KEYS}
    paths: dict[str, Path] = {}
    for f in image_fields(pipeline.request_type):
        wire = wire_name(f.name)
        key = batch_key(wire)
        if key not in body:
            continue
        if wire in body:
            raise InvalidRequest(f"give {key} (a file path) or {wire} (base64), not both", field=key)
        value = body.pop(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{key} must be a file path, got {json.dumps(value)}", field=key)
        paths[wire] = (batch.parent / Path(value).expanduser()).resolve()
    job = BatchJob(line, job_id, pipeline, body, paths)
    request, images = job.request(batch, max_pixels)
    unknown = request.ignored_fields
    if unknown:
        known = [wire_name(f.name) for f in wire_fields(pipeline.request_type)] + list(BATCH_KEYS)
        known += [batch_key(wire_name(f.name)) for f in image_fields(pipeline.request_type)]
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} for {pipeline.route}" + (f"; did you mean {close[0]!r}?" if close else ""),
            field=unknown[0], hint="Field names are case-sensitive PascalCase, as in REST request bodies.",
        )
    if check_model is not None:
        check_model(request, pipeline.route)
    job.fingerprint = fingerprint(pipeline, request, images)
    return job


def fingerprint(pipeline: PipelineInfo, request: GenerationRequest, images: list[InputImage]) -> str:
    """A hash of everything a job asks for: pipeline, request fields and input bytes."""
    what = {"Pipeline": pipeline.route, "Request": request.parameters(),
            "Inputs": {image.wire: image.sha256 for image in images}}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _inline(value: str, wire: str, batch: Path, line: int) -> InputImage:
    """An image given inline as base64 in a batch file (recorded by file and line, not embedded)."""
    from pico.schemas.images import decode_base64

    return InputImage(wire, decode_base64(value, wire), None, {"Batch": str(batch.resolve()), "Line": line})


def inline_value(batch: Path, line: Any, wire: str) -> bytes:
    """The bytes of base64 field ``wire`` of the job on ``line`` of a batch file (for pico again)."""
    for number, entry in read_entries(batch):
        if number == line and isinstance(entry, dict) and isinstance(entry.get(wire), str):
            return _inline(entry[wire], wire, batch, number).data
    raise InvalidRequest(f"input {wire}: line {line} of {batch} no longer holds it", field=wire,
                         hint="The image was made from a base64 value in that batch file; restore the file.")
