"""The ``pico`` command line: one subcommand per pipeline, batch, info, serve and demo-models."""

from pico.cli import batch, files, generate, models, serve  # noqa: F401  (registers their commands)
from pico.cli.app import app, main

__all__ = ["app", "main"]
