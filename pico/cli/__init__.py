"""The ``pico`` command line: one subcommand per pipeline, batch, info, serve and demo-models."""

from pico.cli import models  # noqa: F401  (registers its commands)
from pico.cli.app import app, main

__all__ = ["app", "main"]
