"""The PICO API (/api/v1): the original's routes, health and status, one route per pipeline."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import bottle

from pico import __version__
from pico.pipelines.base import Generation, Runner
from pico.pipelines.registry import RUNNERS
from pico.schemas.images import embedded_parameters, encode_image, to_base64
from pico.schemas.requests import GenerationRequest
from pico.schemas.responses import Health, PicoImage, PicoResponse
from pico.server.body import parse_json, read_body

if TYPE_CHECKING:
    from pico.server.app import Service

PREFIX = "/api/v1"


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the PICO API routes to ``app``."""
    app.route(f"{PREFIX}/health", "GET", lambda: _json(Health("Busy" if service.jobs.busy else "Idle").to_dict()))
    app.route(f"{PREFIX}/status", "GET", lambda: _json(status(service)))
    for runner in RUNNERS:
        app.route(f"{PREFIX}/{runner.route}", "POST", _generation_route(service, runner), name=runner.route)


def status(service: "Service") -> dict:
    """Slots in use, queue length, loaded models and device."""
    counts = service.jobs.counts()
    return {
        "Status": "Busy" if counts["SlotsInUse"] >= counts["Slots"] else "Idle",
        **counts,
        "LoadedModels": service.engine.loaded_models(),
        "Device": str(service.engine.device),
        "Version": __version__,
        "UptimeSeconds": round(time.time() - service.started, 1),
        "Jobs": [job.to_dict() for job in service.jobs.active()],
    }


def _generation_route(service: "Service", runner: Runner):
    def generate() -> str:
        body = parse_json(read_body(bottle.request.environ, service.settings.max_body_mb * 1024 * 1024))
        request = runner.request_type.parse(body, service.settings.max_pixels)
        job, generation = service.jobs.run(runner.route, request, on_start=_announce_job)
        bottle.request.environ["pico.log"] = {
            "images": len(generation.images), "seed": generation.metadata[0]["Seed"]}
        return _json(pico_response(runner, request, generation, job.elapsed,
                                   service.settings.png_compress_level).to_dict())

    generate.__doc__ = runner.summary
    return generate


def _announce_job(job) -> None:
    bottle.response.set_header("X-Pico-Job", job.id)


def pico_response(runner: Runner, request: GenerationRequest, generation: Generation, elapsed: float,
                  compress_level: int) -> PicoResponse:
    """The PicoResponse for a generation: each image encoded with its parameters embedded."""
    params = request.parameters()
    images = [
        PicoImage(
            name=generation.name,
            image_base64=to_base64(encode_image(image, request.output_format,
                                                embedded_parameters(runner.route, params, meta), compress_level)),
            metadata=meta,
        )
        for image, meta in zip(generation.images, generation.metadata)
    ]
    return PicoResponse(elapsed_seconds=round(elapsed, 3), images=images,
                        ignored_fields=request.ignored_fields, warnings=generation.warnings)


def _json(data: dict) -> str:
    bottle.response.content_type = "application/json"
    return json.dumps(data, ensure_ascii=False)

