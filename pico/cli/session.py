"""One command's generation work: settings, a lazily started engine, progress, files and printed results.

The CLI's only contact with the library: requests go in through ``Engine.generate``,
Generations come out and become files. Nothing here imports torch; the engine does,
the first time it is needed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pico
from pico.cli.inputs import InputImage, records
from pico.cli.options import Common
from pico.cli.output import Printer, Saved, save_generation
from pico.cli.progress import ProgressView
from pico.config import Settings

if TYPE_CHECKING:
    from pico.catalog.pipelines import PipelineInfo
    from pico.schemas.results import Generation
    from pico.pipelines.engine import Engine
    from pico.schemas.requests import GenerationRequest


class Session:
    """Settings, engine, progress display and printer for the generations of one command."""

    def __init__(self, common: Common, settings: Settings, keep_bars: bool = True):
        self.common = common
        self.settings = settings
        self.view = ProgressView(enabled=not common.quiet, keep=keep_bars)
        self.printer = Printer(quiet=common.quiet, json_lines=common.json_lines, emit=self.view.result)
        self._engine: Engine | None = None

    def __enter__(self) -> Session:
        self.view.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        # The engine is not closed: the process ends with the command, and Engine.close() spends
        # a garbage collection per model for nothing.
        self.view.__exit__(*exc)

    @property
    def engine(self) -> Engine:
        """The engine, started on first use (importing PyTorch and Diffusers takes a few seconds)."""
        if self._engine is None:
            with self.view.status("starting PyTorch and Diffusers"):
                from pico.pipelines.engine import Engine

                self._engine = Engine(self.settings)
        return self._engine

    def generate(self, pipeline: PipelineInfo, request: GenerationRequest, label: str) -> Generation:
        """Run one request with a progress bar (and a loading row when its model is not loaded yet)."""
        engine = self.engine
        loading = None if engine.is_loaded(request.model) else f"loading {request.model}"
        with self.view.generation(label, loading) as on_step:
            return engine.generate(request, on_step=on_step)

    def save(self, generation: Generation, pipeline: PipelineInfo, request: GenerationRequest, folder: Path,
             inputs: list[InputImage], only: int | None = None, extra: dict[str, Any] | None = None) -> list[Saved]:
        """Write the images (or the one at index ``only``) and print a result line for each."""
        embedded_extra: dict[str, Any] = {"Run": self.run_info()}
        if inputs:
            embedded_extra["Inputs"] = records(inputs)
        saved = save_generation(generation, pipeline, request, folder, extra=embedded_extra,
                                compress_level=self.settings.png_compress_level, only=only)
        self.printer.warnings(generation.warnings)
        for item in saved:
            item.extra.update(extra or {})
            self.printer.image(item, generation.warnings, generation.elapsed)
        return saved

    def run(self, pipeline: PipelineInfo, request: GenerationRequest, folder: Path, inputs: list[InputImage],
            label: str, extra: dict[str, Any] | None = None) -> list[Saved]:
        """Generate a request and write all its images to ``folder``."""
        generation = self.generate(pipeline, request, label)
        return self.save(generation, pipeline, request, folder, inputs, extra=extra)

    def run_info(self) -> dict[str, Any]:
        """How the images were made, beyond the request: device, demo mode, PICO version, time."""
        return {
            "Device": str(self.engine.device),
            "Demo": self.settings.demo,
            "Pico": pico.__version__,
            "Created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

def label_for(pipeline: PipelineInfo, request: GenerationRequest) -> str:
    """The progress label of a request: command, image count and seed."""
    count = f"{request.total} images" if request.total > 1 else "1 image"
    seed = f", seed {request.seed}" if request.seed is not None and request.seed >= 0 else ""
    return f"{pipeline.command} ({count}{seed})"
