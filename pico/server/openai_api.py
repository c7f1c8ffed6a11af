"""The OpenAI Images API (/v1/images/...), translated to and from PICO requests.

generations -> text-to-image, edits -> image-to-image (no mask) or inpainting (mask),
variations -> image variation; on the same job slots as the PICO API. SD parameters the
OpenAI API lacks (negative_prompt, seed, steps, guidance_scale, strength, scheduler) come
through the SDKs' ``extra_body``.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
import typing
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import bottle
from dataclasses_json import DataClassJsonMixin
from PIL import Image

from pico.errors import InvalidRequest, MalformedRequest, NotFound, PicoError
from pico.pipelines.models import SD1_INPAINT_MODEL, VARIATION_MODEL, model_id
from pico.pipelines.registry import find_runner, text_to_image_runner
from pico.pipelines.schedulers import SCHEDULER_NAMES
from pico.schemas import fields
from pico.schemas.fields import option
from pico.schemas.images import FORMATS, MIME_TYPES, open_image, to_base64
from pico.schemas.requests import MAX_PHRASE_CHARS, MAX_SEED, MAX_STEPS, MAX_TOTAL
from pico.server.api import encoded_images, read_json_body, run_job, send_json
from pico.server.body import read_body
from pico.server.errors import in_protocol_terms
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.app import Service

TAG = "OpenAI Images API"
URL_TTL_SECONDS = 3600  # OpenAI's image URLs last an hour too
URL_STORE_BYTES = 256 * 1024 * 1024  # what response_format=url may hold in memory
OPENAI_MODEL_PREFIXES = ("dall-e", "gpt-image")  # clients that hard-code OpenAI's models get the default

# PICO field -> OpenAI parameter, so errors name what the client sent.
PARAMS = {
    "Phrase": "prompt", "NegativePhrase": "negative_prompt", "Total": "n", "Seed": "seed", "Steps": "steps",
    "GuidanceScale": "guidance_scale", "Strength": "strength", "Scheduler": "scheduler", "Width": "size",
    "Height": "size", "ImageBase64": "image", "MaskImageBase64": "mask", "Model": "model",
    "OutputFormat": "output_format",
}


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


class ResultStore:
    """Encoded images for response_format=url: kept an hour, the oldest dropped beyond URL_STORE_BYTES."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_bytes: int = URL_STORE_BYTES) -> None:
        self._items: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._clock, self._max_bytes = clock, max_bytes  # tests pass their own clock and bound

    def put(self, data: bytes, fmt: str) -> str:
        """Store an image; returns its token."""
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._items[token] = (self._clock() + URL_TTL_SECONDS, fmt, data)
            self._bytes += len(data)
            while self._bytes > self._max_bytes and len(self._items) > 1:
                self._bytes -= len(self._items.popitem(last=False)[1][2])
        return token

    def get(self, token: str) -> tuple[str, bytes]:
        """(format, bytes) of a stored image; NotFound once expired."""
        with self._lock:
            now = self._clock()
            for key in [k for k, (expires, _, _) in self._items.items() if expires < now]:
                self._bytes -= len(self._items.pop(key)[2])
            item = self._items.get(token)
        if item is None:
            raise NotFound("This image URL has expired or never existed; image URLs last one hour")
        return item[1], item[2]


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the OpenAI Images routes to ``app``."""
    store = ResultStore()

    def generations() -> str:
        request = fields.parse(ImageGenerationRequest, read_json_body(service))
        return _answer(service, store, "generations", request, {})

    def edits() -> str:
        form, files = _multipart(service, ImageEditRequest)
        return _answer(service, store, "edits", fields.parse(ImageEditRequest, form), files)

    def variations() -> str:
        form, files = _multipart(service, ImageVariationRequest)
        return _answer(service, store, "variations", fields.parse(ImageVariationRequest, form), files)

    def result(token: str) -> bytes:
        fmt, data = store.get(token.rsplit(".", 1)[0])
        bottle.response.content_type = MIME_TYPES[fmt]
        bottle.response.set_header("Cache-Control", "private, max-age=3600")
        return data

    doc = dict(tag=TAG, response=OpenAIImagesResponse, errors="openai")
    app.route("/v1/images/generations", "POST", generations,
              doc=RouteDoc("Create images from a prompt (Stable Diffusion text-to-image)",
                           request=ImageGenerationRequest, **doc))
    app.route("/v1/images/edits", "POST", edits,
              doc=RouteDoc("Edit an image: inpaint the mask's transparent area, or redraw it without a mask",
                           multipart=ImageEditRequest, **doc))
    app.route("/v1/images/variations", "POST", variations,
              doc=RouteDoc("Variations of an image", multipart=ImageVariationRequest, **doc))
    app.route("/v1/images/files/<token>", "GET", result,
              doc=RouteDoc("An image made with response_format=url (kept one hour)", TAG,
                           response={"type": "string", "format": "binary"}, response_type="image/png",
                           errors="openai"))


def _answer(service: "Service", store: ResultStore, kind: str, request: Any, files: dict[str, bytes]) -> str:
    """Translate, run through the job slots, and encode the OpenAI response."""
    runner, pico_request = _translate(service, kind, request, files)
    _, generation = run_job(service, runner, pico_request, origin="openai")
    encoded = encoded_images(runner, pico_request, generation, request.output_format,
                             service.settings.png_compress_level)
    if request.response_format == "url":
        base = f"{bottle.request.urlparts.scheme}://{bottle.request.urlparts.netloc}/v1/images/files"
        data = [OpenAIImage(url=f"{base}/{store.put(image, request.output_format)}.{request.output_format}")
                for image in encoded]
    else:
        data = [OpenAIImage(b64_json=to_base64(image)) for image in encoded]
    first = generation.images[0]
    response = OpenAIImagesResponse(created=int(time.time()), data=data, output_format=request.output_format,
                              size=f"{first.width}x{first.height}")
    return send_json({**response.to_dict(), "data": [{k: v for k, v in d.to_dict().items() if v is not None}
                                                     for d in data]})


def _translate(service: "Service", kind: str, request: Any, files: dict[str, bytes]) -> tuple[Any, Any]:
    """The PICO runner and validated PICO request for an OpenAI request (files: multipart uploads)."""
    width, height = _size(request.size)
    body: dict[str, Any] = {
        "Total": request.n, "Seed": request.seed, "Steps": request.steps, "GuidanceScale": request.guidance_scale,
        "Scheduler": request.scheduler, "Width": width, "Height": height, "OutputFormat": request.output_format,
    }
    images: dict[str, Image.Image] = {}
    if kind == "generations":
        model = _model(request.model, service.default_model)
        runner = text_to_image_runner(model)
        body.update(Phrase=request.prompt, NegativePhrase=request.negative_prompt)
    else:
        images["ImageBase64"] = _upload(service, files, "image")
        if kind == "variations":
            runner = find_runner("image-variation")
            model = _model(request.model, VARIATION_MODEL)
        elif "mask" in files:
            runner = find_runner("inpaint")
            model = _model(request.model, SD1_INPAINT_MODEL)
            images["MaskImageBase64"] = _repaint_mask(_upload(service, files, "mask", mode="RGBA"))
        else:
            runner = find_runner("image-to-image")
            model = _model(request.model, service.default_model)
        if kind == "edits":
            body.update(Phrase=request.prompt, NegativePhrase=request.negative_prompt, Strength=request.strength)
    body["Model"] = model
    try:
        pico_request = runner.request_type.parse({k: v for k, v in body.items() if v is not None},
                                                 service.settings.max_pixels, images=images)
    except PicoError as exc:
        raise in_protocol_terms(exc, PARAMS) from None
    return runner, pico_request


def _model(name: str | None, default: str) -> str:
    if not name or name.strip().lower().startswith(OPENAI_MODEL_PREFIXES):
        return default
    return model_id(name)


def _size(size: str) -> tuple[int | None, int | None]:
    text = size.strip().lower()
    if text in ("", "auto"):
        return None, None
    width, sep, height = text.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise InvalidRequest(f"size must be WIDTHxHEIGHT (e.g. 512x512) or auto, got {size!r}", field="size")
    return int(width), int(height)


def _upload(service: "Service", files: dict[str, bytes], name: str, mode: str = "RGB") -> Image.Image:
    if name not in files:
        raise InvalidRequest(f"{name} is required: send it as a file part of the multipart form", field=name)
    return open_image(files[name], name, service.settings.max_pixels, mode)


def _repaint_mask(mask: Image.Image) -> Image.Image:
    """OpenAI marks the area to repaint with transparent pixels; Diffusers with white. Convert.

    A mask without transparency is taken as already white-for-repaint.
    """
    alpha = mask.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return mask.convert("L")
    return alpha.point(lambda a: 255 if a < 128 else 0)


def _multipart(service: "Service", cls: type) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A multipart form as (fields for ``cls``, numbers and booleans converted from text; file parts' bytes)."""
    environ = bottle.request.environ
    if not environ.get("CONTENT_TYPE", "").lower().startswith("multipart/form-data"):
        raise MalformedRequest("This route takes multipart/form-data (an image file and form fields)")
    data = read_body(environ, service.settings.max_body_mb * 1024 * 1024)
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(data), str(len(data))
    try:
        form = bottle.request.POST
    except (bottle.MultipartError, ValueError) as exc:
        raise MalformedRequest(f"The multipart body could not be parsed: {exc}") from None
    hints = typing.get_type_hints(cls)
    body: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for key in form:
        name = key[:-2] if key.endswith("[]") else key
        value = form.getall(key)[0]  # the first of repeated parts (image[]) is the one used
        if isinstance(value, bottle.FileUpload):
            files.setdefault(name, value.file.read())
        elif name in hints:
            body[name] = _from_text(value, hints[name])
        else:
            body[name] = value
    return body, files


def _from_text(value: str, annotation: Any) -> Any:
    """A form field's text as the field's type, when it reads as one; else the text (parse says what is wrong)."""
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    try:
        if int in kinds:
            return int(value)
        if float in kinds:
            return float(value)
        if bool in kinds and value.lower() in ("true", "false"):
            return value.lower() == "true"
    except ValueError:
        pass
    if value == "" and type(None) in typing.get_args(annotation):
        return None
    return value

