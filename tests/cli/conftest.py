"""CLI fixtures: invoke the real ``pico`` app (Typer's runner or a subprocess) on the tiny models."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pico.cli import app

REPO = Path(__file__).resolve().parents[2]
STEPS = ["--steps", "2"]


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Each invocation logs to the stderr it runs with (the handler would keep the first runner's stream)."""
    yield
    logger = logging.getLogger("pico")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


@pytest.fixture
def models(tiny_models: Path) -> list[str]:
    """The options that point a command at the tiny models on the CPU."""
    return ["--models-dir", str(tiny_models), "--device", "cpu"]


@pytest.fixture
def pico(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run ``pico ARGS`` in-process through Typer's runner, in a scratch working folder."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def run_pico(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pico ARGS`` as a subprocess, the real entry point."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pico", *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


def write_png(path: Path, size=(64, 64), color=(200, 40, 40), mode: str = "RGB") -> Path:
    """A solid-colour PNG file."""
    Image.new(mode, size, color).save(path, format="PNG")
    return path


def write_mask(path: Path) -> Path:
    """A 64x64 mask whose right half (white) is repainted."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    mask.save(path, format="PNG")
    return path


def png_files(folder: Path) -> list[Path]:
    """The PNG files directly in ``folder``, sorted by name."""
    return sorted(folder.glob("*.png"))


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def pixels(path: Path) -> np.ndarray:
    """The pixels of an image file as an array."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return np.asarray(image.convert("RGB"))


def flat(text: str) -> str:
    """Text with rich's wrapping and panel borders undone: words separated by single spaces."""
    return " ".join(word for word in text.split() if word not in "│╭╮╰╯─")
