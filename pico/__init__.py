"""PICO: Diffusers image pipelines from the shell and as a REST server."""

__version__ = "0.1.0"
