"""Where images land and what is printed about them.

Files are named ``<date>-<time>-<command>-<seed>.<ext>`` so a listing sorts by time and
shows the pipeline and seed, and created exclusively: an existing file is never replaced.
Results go to stdout (human lines, bare paths with --quiet, JSON lines with --json);
notices and warnings go to stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text

from pico.cli.app import err_console
from pico.errors import OutputError

if TYPE_CHECKING:
    from pico.catalog.pipelines import PipelineInfo
    from pico.schemas.results import Generation
    from pico.schemas.requests import GenerationRequest

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
MAX_SUFFIX = 10_000
out_console = Console(soft_wrap=True, highlight=False)


@dataclass
class Saved:
    """One image file written: where, from which seed, and the parameters embedded in it."""

    path: Path
    seed: int
    index: int
    metadata: dict[str, Any]
    embedded: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def prepare_folder(folder: Path, option: str = "--out") -> Path:
    """Create ``folder`` if missing; a clear error when it cannot be (checked before any generation)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{option} {folder} is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"{option} {folder} cannot be created: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {folder} is not writable")
    return folder


def image_stem(command: str, seed: int, when: datetime) -> str:
    """The file name without extension: ``20261127-143005-stable-diffusion-xl-1234567``."""
    return f"{when:%Y%m%d-%H%M%S}-{command}-{seed}"


def write_new(folder: Path, stem: str, ext: str, data: bytes) -> Path:
    """Write ``data`` to a new file ``stem.ext`` (``stem_2.ext``... when taken); never replaces a file."""
    prepare_folder(folder)
    for n in range(1, MAX_SUFFIX):
        path = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}_{n}.{ext}")
        try:
            with open(path, "xb") as handle:  # x: fails rather than replace a file
                handle.write(data)
        except FileExistsError:
            continue
        except BaseException as exc:  # a full disk or Ctrl-C: no half-written image is left behind
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
            raise
        return path
    raise OutputError(f"{folder} already holds {MAX_SUFFIX} files named {stem}_N.{ext}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(scratch, path)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def save_generation(generation: Generation, pipeline: PipelineInfo, request: GenerationRequest, folder: Path, *,
                    extra: dict[str, Any], compress_level: int, only: int | None = None) -> list[Saved]:
    """Encode and write the images of a generation (only the one at index ``only`` if given).

    Each file embeds the request that reproduces it (seed pinned to the batch's first),
    the image's metadata, and ``extra`` (Inputs: the input files; Run: device and mode).
    """
    from pico.schemas.images import embedded_parameters, encode_images

    fmt = request.output_format
    parameters = request.parameters()
    when = datetime.now()
    chosen = [(index, image, metadata)
              for index, (image, metadata) in enumerate(zip(generation.images, generation.metadata))
              if only is None or index == only]
    embedded = [{**embedded_parameters(pipeline.route, parameters, metadata), **extra} for _, _, metadata in chosen]
    encoded = encode_images([image for _, image, _ in chosen], fmt, embedded, compress_level)
    saved = []
    for (index, _, metadata), params, data in zip(chosen, embedded, encoded):
        path = write_new(folder, image_stem(pipeline.command, metadata["Seed"], when), EXTENSIONS[fmt], data)
        saved.append(Saved(path, metadata["Seed"], metadata.get("Index", index), metadata, params))
    return saved


def result_line(line: str | Text) -> None:
    """A result on stdout: plain text as it is (for scripts), rich Text styled when stdout is a terminal."""
    if isinstance(line, str):
        typer.echo(line)
    else:
        out_console.print(line)


def say(message: Any) -> None:
    """One message line on stderr, never wrapped (so logs and greps see whole lines)."""
    err_console.print(message, highlight=False, soft_wrap=True)


class Printer:
    """Prints results on stdout in the chosen style, and warnings on stderr."""

    def __init__(self, quiet: bool = False, json_lines: bool = False, emit: Callable[[str | Text], None] | None = None):
        self.quiet = quiet
        self.json_lines = json_lines
        self.emit = emit or result_line
        self._warned: set[str] = set()

    def image(self, item: Saved, warnings: list[str], elapsed: float) -> None:
        """One line for one image written."""
        if self.json_lines:
            line = {"path": str(item.path), "seed": item.seed, "index": item.index,
                    "pipeline": item.embedded["Pipeline"], **item.extra, "metadata": item.metadata,
                    "warnings": warnings, "elapsed": round(elapsed, 3)}
            self.emit(json.dumps(line, ensure_ascii=False))
        elif self.quiet:
            self.emit(str(item.path))
        else:
            meta = item.metadata
            details = f"seed {item.seed} · {meta['Width']}x{meta['Height']} · {meta['Quality']} steps · {elapsed:.1f} s"
            self.emit(Text.assemble(Text(str(item.path), style="bold"), "  ", Text(details, style="dim")))

    def warnings(self, warnings: list[str]) -> None:
        """A generation's notes on stderr, each once (in the JSON lines instead with --json; none with --quiet)."""
        if self.quiet or self.json_lines:
            return
        for note in warnings:
            if note in self._warned:
                continue
            self._warned.add(note)
            say(Text.assemble(Text("warning: ", style="bold yellow"), note))
