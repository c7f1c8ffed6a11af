"""Shared fixtures: the tiny real models (built once per run by `pico demo-models`), an engine on
them, live servers (one per distinct configuration), images as base64."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hypothesis import settings  # noqa: E402
from PIL import Image  # noqa: E402

from tests.live import LiveServer  # noqa: E402

# Property tests draw the same examples on every run, so a suite that passed passes again (CI lands or not
# on one run); `pytest --hypothesis-profile=explore` searches afresh, with more examples.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile("default")


@pytest.fixture(scope="session")
def demo_models_run(tmp_path_factory: pytest.TempPathFactory):
    """`pico demo-models DIR`, run once: (DIR, the command's result)."""
    from typer.testing import CliRunner

    from pico.cli import app

    root = tmp_path_factory.mktemp("models")
    result = CliRunner().invoke(app, ["demo-models", str(root)])
    assert result.exit_code == 0, result.output
    return root, result


@pytest.fixture(scope="session")
def tiny_models(demo_models_run) -> Path:
    """A models directory holding the tiny random-weight pipelines for every default id."""
    return demo_models_run[0]


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """A PICO_CACHE_DIR whose demo models are the session's tiny models (so --demo builds nothing)."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "demo-models").symlink_to(tiny_models, target_is_directory=True)
    return cache


@pytest.fixture(scope="session")
def serve(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """Start a live server: ``serve(*args, env=None, models=True, fresh=False) -> LiveServer``.

    Servers are shared: the same arguments and environment give the server already running
    (each start costs seconds). ``models`` adds ``--models-dir`` with the tiny models. A test that
    stops its server asks for a ``fresh`` one, which nobody else gets. Every server can hold its
    generations open (``with server.held():``).
    """
    running: dict[tuple, LiveServer] = {}
    started: list[LiveServer] = []

    def start(*args: str, env: dict[str, str] | None = None, models: bool = True, fresh: bool = False) -> LiveServer:
        key = (args, tuple(sorted((env or {}).items())), models)
        if not fresh and key in running and running[key].process.poll() is None:
            return running[key]
        folder = tmp_path_factory.mktemp("serve")
        live = LiveServer(["--device", "cpu", *(["--models-dir", str(tiny_models)] if models else []), *args], env=env,
                          log=folder / "serve.log", hold=folder / "hold")
        started.append(live)
        if not fresh:
            running[key] = live
        return live

    yield start
    for live in started:
        live.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how many servers the run started: each start costs seconds, so the count should stay small."""
    if LiveServer.starts:
        terminalreporter.write_line(f"pico serve started {LiveServer.starts} time(s)")


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
