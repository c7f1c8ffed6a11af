"""OpenAI's image streaming: ``stream=True`` (and ``partial_images`` 0-3) on generations and edits.

The answer is Server-Sent Events in the shapes the OpenAI SDKs parse: ``image_generation.partial_image``
(edits: ``image_edit.partial_image``) with ``b64_json`` and ``partial_image_index``, then one
``image_generation.completed`` (``image_edit.completed``) per image. Partial images are the job's
cheap latent previews, scaled to the final size, taken every steps/(partial_images+1) steps: with
20 steps and partial_images=2, after steps 6 and 12. A failure after the stream began is an
``error`` event with OpenAI's error body, which the SDKs raise as an APIError.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import bottle
from PIL import Image

from pico.errors import InvalidRequest, PicoError
from pico.schemas.images import encode_image, to_base64
from pico.server.connection import liveness
from pico.server.errors import in_protocol_terms, render, unexpected
from pico.server.events.follow import JobWatcher, follow
from pico.server.events.streams import (
    HEARTBEAT,
    EventStream,
    StreamedJob,
    answer_with_stream,
    finish_streamed_job,
    sse,
    start_streamed_job,
)
from pico.server.http import encoded_images

if TYPE_CHECKING:
    from pico.catalog.pipelines import PipelineInfo
    from pico.schemas.requests import GenerationRequest
    from pico.server.service import Service

MAX_PARTIAL_IMAGES = 3
QUALITIES = ("low", "medium", "high", "xhigh", "max", "auto")  # what the SDK's event types allow
LATENT_SCALE = 8  # previews are made from the latents: 1/8 of the image's size
TRUE_TEXTS = ("true", "1")
FALSE_TEXTS = ("false", "0", "")
NO_USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
            "output_tokens": 0, "total_tokens": 0}


def partial_images_asked(body: dict[str, Any]) -> int | None:
    """``partial_images`` when the request asks for a stream (0-3), None when it does not.

    JSON bodies send booleans and numbers; multipart forms (edits) send them as text.
    """
    stream = body.get("stream")
    if isinstance(stream, str):
        text = stream.strip().lower()
        if text not in TRUE_TEXTS + FALSE_TEXTS:
            raise InvalidRequest(f"stream must be true or false, got {stream!r}", field="stream")
        stream = text in TRUE_TEXTS
    if stream is None or stream is False:
        return None
    if stream is not True:
        raise InvalidRequest(f"stream must be true or false, got {stream!r}", field="stream")
    partial = body.get("partial_images")
    if partial is None or partial == "":
        return 0
    if isinstance(partial, str) and partial.strip().isdigit():
        partial = int(partial)
    if isinstance(partial, bool) or not isinstance(partial, int) or not 0 <= partial <= MAX_PARTIAL_IMAGES:
        raise InvalidRequest(f"partial_images must be a whole number from 0 to {MAX_PARTIAL_IMAGES}, got {partial!r}",
                             field="partial_images")
    return partial


def partial_steps(count: int) -> Callable[[int, int], bool] | None:
    """At which steps of ``total`` the partial images are taken: every total/(count+1) steps, before the last."""
    if count <= 0:
        return None

    def wants(done: int, total: int) -> bool:
        every = max(1, total // (count + 1))
        return done < total and done % every == 0 and done // every <= count

    return wants


def stream_images(service: "Service", kind: str, pipeline: "PipelineInfo", pico_request: "GenerationRequest",
                  request: Any, partial_images: int, params: dict[str, str]) -> EventStream:
    """Run an OpenAI generation or edit as a job and answer with its partial and completed images as events.

    ``params`` maps PICO field names to the OpenAI parameters they came from, for errors.
    """
    prefix = "image_generation" if kind == "generations" else "image_edit"
    fmt = request.output_format
    quality = getattr(request, "quality", None)
    common = {"background": "opaque", "output_format": fmt, "quality": quality if quality in QUALITIES else "auto"}
    compress = service.settings.png_compress_level

    def respond(_job: Any, generation: Any) -> list[tuple[str, str]]:
        encoded = encoded_images(pipeline, pico_request, generation, fmt, compress)
        return [(to_base64(data), f"{image.width}x{image.height}") for data, image in zip(encoded, generation.images)]

    watcher = JobWatcher(partial_steps(partial_images), keep=max(1, partial_images))
    run = start_streamed_job(service, pipeline, pico_request, "openai", respond, watcher)
    alive = liveness(bottle.request.environ)

    def events() -> Iterator[bytes]:
        index = 0
        for update in follow(run.job, watcher, service.jobs.position, run.done.is_set, alive):
            if update.kind == "heartbeat":
                yield HEARTBEAT
            elif update.kind == "preview":
                for image in update.images:
                    partial = image.resize((image.width * LATENT_SCALE, image.height * LATENT_SCALE),
                                           Image.Resampling.BILINEAR)
                    yield sse(f"{prefix}.partial_image", {
                        "type": f"{prefix}.partial_image", "b64_json": to_base64(encode_image(partial, fmt, None,
                                                                                              compress)),
                        "created_at": int(time.time()), "size": f"{partial.width}x{partial.height}",
                        "partial_image_index": index, **common})
                index += 1
        if run.done.is_set():
            yield from _ending(service, run, prefix, common, params)

    return answer_with_stream(events(), lambda: finish_streamed_job(service, run), run.job)


def _ending(service: "Service", run: StreamedJob, prefix: str, common: dict[str, Any],
            params: dict[str, str]) -> Iterator[bytes]:
    """One completed event per image, or the error event (in OpenAI's terms)."""
    if run.error is None:
        for b64, size in run.result:
            yield sse(f"{prefix}.completed", {"type": f"{prefix}.completed", "b64_json": b64,
                                              "created_at": int(time.time()), "size": size, "usage": NO_USAGE,
                                              **common})
        return
    error = run.error
    if not isinstance(error, PicoError):
        error = unexpected(error, service.settings.verbose)
    _, _, body = render(in_protocol_terms(error, params), "openai", service.settings.verbose)
    yield sse("error", {"type": "error", **body})
