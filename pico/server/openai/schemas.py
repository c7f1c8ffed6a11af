"""The OpenAI Images API's bodies, snake_case on the wire as the OpenAI SDKs send them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataclasses_json import DataClassJsonMixin

from pico.catalog.samplers import SCHEDULER_NAMES
from pico.schemas.fields import option
from pico.schemas.images import FORMATS
from pico.schemas.requests import MAX_PHRASE_CHARS, MAX_SEED, MAX_STEPS, MAX_TOTAL


@dataclass(kw_only=True)
class _Common(DataClassJsonMixin):
    """Fields every OpenAI image route takes."""

    model: str | None = option(None, max_length=200,
                               description="sd15, sd2, sdxl, sd15-inpaint, sd-variation, or an allowed model id; "
                                           "default: the server's default model.")
    n: int = option(1, minimum=1, maximum=MAX_TOTAL, description="Number of images.")
    size: str = option("auto", max_length=20, description="WIDTHxHEIGHT (multiples of 8) or auto (the model's own).")
    response_format: str = option("b64_json", choices=("b64_json", "url"),
                                  description="b64_json, or url (served by this server for an hour).")
    output_format: str = option("png", choices=FORMATS, description="png, jpeg or webp.")
    user: str | None = option(None, max_length=256, description="Accepted and ignored.")
    seed: int | None = option(None, minimum=-1, maximum=MAX_SEED, description="extra_body: first image's seed.")
    steps: int | None = option(None, minimum=1, maximum=MAX_STEPS, description="extra_body: denoising steps.")
    guidance_scale: float | None = option(None, minimum=0, maximum=10, description="extra_body: guidance scale.")
    scheduler: str | None = option(None, choices=SCHEDULER_NAMES, description="extra_body: sampler (A1111 name).")
    loras: Any = option(None, description='extra_body: LoRAs to apply, up to 8: [{"name": "add-detail", '
                                          '"weight": 0.8}] or ["add-detail:0.8"] (multipart: a JSON string, or '
                                          'loras[] parts "NAME:WEIGHT").')


@dataclass(kw_only=True)
class ImageGenerationRequest(_Common):
    """OpenAI images.generate, run as Stable Diffusion text-to-image."""

    prompt: str = option("", required=True, max_length=MAX_PHRASE_CHARS, example="ginger cat",
                         description="What to draw.")
    negative_prompt: str | None = option(None, max_length=MAX_PHRASE_CHARS, description="extra_body: what to avoid.")
    quality: str | None = option(None, max_length=20, description="Accepted and ignored.")
    style: str | None = option(None, max_length=20, description="Accepted and ignored.")


@dataclass(kw_only=True)
class ImageEditRequest(_Common):
    """OpenAI images.edit (multipart): inpainting with a mask, image-to-image without."""

    image: str = option("", required=True, file=True, description="The image file (also image[]; the first is used).")
    mask: str | None = option(None, file=True, description="PNG whose transparent pixels mark the area to repaint.")
    prompt: str = option("", required=True, max_length=MAX_PHRASE_CHARS, description="What to draw.")
    negative_prompt: str | None = option(None, max_length=MAX_PHRASE_CHARS, description="extra_body: what to avoid.")
    strength: float | None = option(None, minimum=0, maximum=1, description="extra_body: how much to change.")


@dataclass(kw_only=True)
class ImageVariationRequest(_Common):
    """OpenAI images.create_variation (multipart), run as Stable Diffusion image variation."""

    image: str = option("", required=True, file=True, description="The image file.")


@dataclass
class OpenAIImage(DataClassJsonMixin):
    """One image: base64 or a URL."""

    b64_json: str | None = None
    url: str | None = None


@dataclass
class OpenAIImagesResponse(DataClassJsonMixin):
    """The body of every OpenAI image route."""

    created: int
    data: list[OpenAIImage]
    output_format: str
    size: str
