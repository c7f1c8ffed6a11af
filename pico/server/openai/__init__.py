"""The OpenAI Images API (/v1/images): routes, request and answer shapes, the image-URL store."""

from pico.server.openai.routes import install

__all__ = ["install"]
