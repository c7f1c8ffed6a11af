"""The OpenAI Images API (/v1/images/...), translated to and from PICO requests.

generations -> text-to-image, edits -> image-to-image (no mask) or inpainting (mask),
variations -> image variation; on the same job slots as the PICO API. SD parameters the
OpenAI API lacks (negative_prompt, seed, steps, guidance_scale, strength, scheduler) come
through the SDKs' ``extra_body``.
"""

from __future__ import annotations

import io
import re
import time
import typing
from typing import TYPE_CHECKING, Any

import bottle
from PIL import Image

from pico.catalog.models import SD1_INPAINT_MODEL, VARIATION_MODEL, model_id
from pico.catalog.pipelines import find_pipeline, text_to_image_pipeline
from pico.errors import InvalidRequest, MalformedRequest, PicoError
from pico.schemas import fields
from pico.schemas.images import MIME_TYPES, open_image, to_base64
from pico.server.body import read_body
from pico.server.connection import liveness
from pico.server.errors import in_protocol_terms
from pico.server.http import encoded_images, read_json_body, run_job, send_json
from pico.server.openai.schemas import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageVariationRequest,
    OpenAIImage,
    OpenAIImagesResponse,
)
from pico.server.openai.store import ResultStore
from pico.server.openai.streaming import partial_images_asked, stream_images
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.config import Settings
    from pico.server.service import Service

TAG = "OpenAI Images API"
OPENAI_MODEL_PREFIXES = ("dall-e", "gpt-image")  # clients that hard-code OpenAI's models get the default
HOST = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")  # a host name or IP, and a port

# PICO field -> OpenAI parameter, so errors name what the client sent.
PARAMS = {
    "Phrase": "prompt", "NegativePhrase": "negative_prompt", "Total": "n", "Seed": "seed", "Steps": "steps",
    "GuidanceScale": "guidance_scale", "Strength": "strength", "Scheduler": "scheduler", "Width": "size",
    "Height": "size", "ImageBase64": "image", "MaskImageBase64": "mask", "Model": "model",
    "OutputFormat": "output_format",
}


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the OpenAI Images routes to ``app``."""
    store = ResultStore()

    def generations() -> str:
        body = read_json_body(service)
        request = fields.parse(ImageGenerationRequest, body)
        return _answer(service, store, "generations", request, {}, partial_images_asked(body))

    def edits() -> str:
        form, files = _multipart(service, ImageEditRequest)
        return _answer(service, store, "edits", fields.parse(ImageEditRequest, form), files,
                       partial_images_asked(form))

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


def _answer(service: "Service", store: ResultStore, kind: str, request: Any, files: dict[str, bytes],
            partial_images: int | None = None) -> Any:
    """Translate, run through the job slots, and encode the OpenAI response (as events when streamed)."""
    pipeline, pico_request = _translate(service, kind, request, files)
    if partial_images is not None:
        return stream_images(service, kind, pipeline, pico_request, request, partial_images, PARAMS)
    base = _public_base(service.settings) + "/v1/images/files" if request.response_format == "url" else ""
    _, generation = run_job(service, pipeline, pico_request, origin="openai")
    encoded = encoded_images(pipeline, pico_request, generation, request.output_format,
                             service.settings.png_compress_level)
    if request.response_format == "url":
        data = [OpenAIImage(url=f"{base}/{store.put(image, request.output_format)}.{request.output_format}")
                for image in encoded]
    else:
        data = [OpenAIImage(b64_json=to_base64(image)) for image in encoded]
    first = generation.images[0]
    response = OpenAIImagesResponse(created=int(time.time()), data=data, output_format=request.output_format,
                              size=f"{first.width}x{first.height}")
    return send_json({**response.to_dict(), "data": [{k: v for k, v in d.to_dict().items() if v is not None}
                                                     for d in data]})


def _public_base(settings: "Settings") -> str:
    """Where clients reach this server: --public-url; else, with --trust-proxy, the host and scheme a proxy
    forwarded; else the Host the client connected with (a malformed one is a 400, as HTTP requires)."""
    if settings.public_url:
        return settings.public_url
    environ = bottle.request.environ
    scheme, host = environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", "")
    if settings.trust_proxy:
        forwarded_scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
        scheme = forwarded_scheme if forwarded_scheme in ("http", "https") else scheme
        host = forwarded_host if HOST.fullmatch(forwarded_host) else host
    if not HOST.fullmatch(host):
        raise MalformedRequest(f"The Host header is not a host name and port: {host[:100]!r}",
                               hint="Send the host you reached the server at, or start it with --public-url.")
    return f"{scheme}://{host}"


def _translate(service: "Service", kind: str, request: Any, files: dict[str, bytes]) -> tuple[Any, Any]:
    """The PICO pipeline and validated PICO request for an OpenAI request (files: multipart uploads)."""
    width, height = _size(request.size)
    body: dict[str, Any] = {
        "Total": request.n, "Seed": request.seed, "Steps": request.steps, "GuidanceScale": request.guidance_scale,
        "Scheduler": request.scheduler, "Width": width, "Height": height, "OutputFormat": request.output_format,
    }
    images: dict[str, Image.Image] = {}
    if kind == "generations":
        model = _model(request.model, service.default_model)
        pipeline = text_to_image_pipeline(model)
        body.update(Phrase=request.prompt, NegativePhrase=request.negative_prompt)
    else:
        images["ImageBase64"] = _upload(service, files, "image")
        if kind == "variations":
            pipeline = find_pipeline("image-variation")
            model = _model(request.model, VARIATION_MODEL)
        elif "mask" in files:
            pipeline = find_pipeline("inpaint")
            model = _model(request.model, SD1_INPAINT_MODEL)
            images["MaskImageBase64"] = _repaint_mask(_upload(service, files, "mask", mode="RGBA"))
        else:
            pipeline = find_pipeline("image-to-image")
            model = _model(request.model, service.default_model)
        if kind == "edits":
            body.update(Phrase=request.prompt, NegativePhrase=request.negative_prompt, Strength=request.strength)
    body["Model"] = model
    try:
        pico_request = pipeline.request_type.parse({k: v for k, v in body.items() if v is not None},
                                                 service.settings.max_pixels, images=images)
    except PicoError as exc:
        raise in_protocol_terms(exc, PARAMS) from None
    return pipeline, pico_request


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
    liveness(environ)  # while wsgi.input still leads to the client's socket
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

