"""Shared fixtures: the tiny real models (built once per run), an engine on them, images as base64."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the tiny random-weight pipelines for every default id."""
    from pico.pipelines.tiny import write_tiny_models

    root = tmp_path_factory.mktemp("models")
    write_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def engine(tiny_models: Path):
    """One engine on the tiny models, shared by the tests that only generate."""
    from pico.config import Settings
    from pico.pipelines.engine import Engine

    return Engine(Settings(models_dir=tiny_models, device="cpu", max_models=8))


def png_bytes(size: tuple[int, int] = (64, 64), color=(200, 40, 40), mode: str = "RGB") -> bytes:
    """A solid-colour PNG."""
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def image_b64() -> str:
    return b64(png_bytes())


@pytest.fixture
def mask_b64() -> str:
    """A mask whose right half (white) is repainted."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return b64(out.getvalue())
