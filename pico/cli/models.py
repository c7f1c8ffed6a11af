"""``pico demo-models``: write the tiny offline models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pico.cli.app import app, err_console


@app.command("demo-models")
def demo_models(
    folder: Annotated[Path, typer.Argument(help="Where to write them; each model goes to FOLDER/org/name.")],
) -> None:
    """Write tiny random-weight models for every default model id (a few MB, seconds, no download).

    They are real Diffusers pipelines of the same classes as the real models, so everything
    runs offline against them: point --models-dir at FOLDER. Their images are noise.

    Example: pico demo-models ./tiny && pico stable-diffusion "ginger cat" --models-dir ./tiny
    """
    from pico.pipelines.tiny import write_tiny_models

    with err_console.status("building tiny models"):
        written = write_tiny_models(folder)
    for model_id in written:
        typer.echo(folder / model_id)
