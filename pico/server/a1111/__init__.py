"""The AUTOMATIC1111 web UI API (/sdapi/v1): routes, request and answer shapes, checkpoints, png-info."""

from pico.server.a1111.routes import install

__all__ = ["install"]
