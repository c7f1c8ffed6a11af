"""The PICO API (/api/v1): the original's routes, health, status, jobs, one route per pipeline."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable

import bottle

from pico import __version__
from pico.pipelines.base import Generation, Runner
from pico.pipelines.registry import RUNNERS
from pico.schemas.fields import to_wire
from pico.schemas.images import embedded_parameters, encode_images, to_base64
from pico.schemas.requests import GenerationRequest
from pico.schemas.responses import Health, JobStatus, PicoImage, PicoResponse, ServerStatus
from pico.server.body import parse_json, read_body
from pico.server.connection import client_alive
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.jobs import Job
    from pico.server.app import Service

PREFIX = "/api/v1"
TAG = "PICO API"


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the PICO API routes to ``app``."""
    jobs = service.jobs
    app.route(f"{PREFIX}/health", "GET", lambda: send_json(Health("Busy" if jobs.busy else "Idle")),
              doc=RouteDoc("Idle, or Busy while every generation slot is taken", TAG, response=Health))
    app.route(f"{PREFIX}/status", "GET", lambda: send_json(status(service)),
              doc=RouteDoc("Slots in use, queue length, loaded models, device and jobs in flight", TAG,
                           response=ServerStatus))
    app.route(f"{PREFIX}/jobs/<job_id>", "GET", lambda job_id: send_json(jobs.get(job_id).describe()),
              doc=RouteDoc("A job's state, step of steps and elapsed time", TAG, response=JobStatus))
    app.route(f"{PREFIX}/jobs/<job_id>", "DELETE",
              lambda job_id: send_json(jobs.cancel(job_id).describe()),
              doc=RouteDoc("Cancel a job: queued, it leaves the queue; running, it stops at its next step", TAG,
                           response=JobStatus))
    for runner in RUNNERS:
        app.route(f"{PREFIX}/{runner.route}", "POST", _generation_route(service, runner),
                  doc=RouteDoc(runner.summary, TAG, request=runner.request_type, response=PicoResponse))


def status(service: "Service") -> ServerStatus:
    """Slots in use, queue length, loaded models and device."""
    counts = service.jobs.counts()
    return ServerStatus(
        status="Busy" if service.jobs.busy else "Idle",
        slots_in_use=counts["SlotsInUse"], slots=counts["Slots"],
        queue_length=counts["QueueLength"], queue_limit=counts["QueueLimit"],
        loaded_models=service.engine.loaded_models(), device=str(service.engine.device), version=__version__,
        uptime_seconds=round(time.time() - service.started, 1),
        jobs=[job.describe() for job in service.jobs.active()],
    )


def run_job(service: "Service", runner: Runner, request: GenerationRequest,
            origin: str = "pico") -> tuple["Job", Generation]:
    """Run a request through the job slots (batched with others when it can be) for the current HTTP request."""
    environ = bottle.request.environ
    job, generation = service.jobs.run(runner.route, request, on_start=_announce_job, alive=client_alive(environ),
                                       origin=origin)
    environ["pico.log"] = {"images": job.images, "seed": job.seeds[0]}
    return job, generation


def run_jobs(service: "Service", runner: Runner, requests: list[GenerationRequest],
             go_on: Callable[["Job"], bool] = lambda _job: True,
             origin: str = "pico") -> tuple["Job", list[Generation]]:
    """Run requests one after another in one job and one slot, for the current HTTP request."""
    environ = bottle.request.environ
    job, generations = service.jobs.run_many(runner.route, requests, on_start=_announce_job,
                                             alive=client_alive(environ), go_on=go_on, origin=origin)
    environ["pico.log"] = {"images": job.images, "seed": job.seeds[0]}
    return job, generations


def read_json_body(service: "Service") -> Any:
    """The current request's body as JSON, within the body limit."""
    return parse_json(read_body(bottle.request.environ, service.settings.max_body_mb * 1024 * 1024))


def _generation_route(service: "Service", runner: Runner):
    def generate() -> str:
        request = runner.request_type.parse(read_json_body(service), service.settings.max_pixels)
        job, generation = run_job(service, runner, request)
        return send_json(pico_response(runner, request, generation, job.elapsed,
                                       service.settings.png_compress_level))

    generate.__doc__ = runner.summary
    return generate


def _announce_job(job: "Job") -> None:
    bottle.response.set_header("X-Pico-Job", job.id)


def pico_response(runner: Runner, request: GenerationRequest, generation: Generation, elapsed: float,
                  compress_level: int) -> PicoResponse:
    """The PicoResponse for a generation: each image encoded with its parameters embedded."""
    images = [
        PicoImage(name=generation.name, image_base64=to_base64(data), metadata=meta)
        for data, meta in zip(encoded_images(runner, request, generation, request.output_format, compress_level),
                              generation.metadata)
    ]
    return PicoResponse(elapsed_seconds=round(elapsed, 3), images=images,
                        ignored_fields=request.ignored_fields, warnings=generation.warnings)


def encoded_images(runner: Runner, request: GenerationRequest, generation: Generation, fmt: str,
                   compress_level: int) -> list[bytes]:
    """Each image of a generation encoded as ``fmt`` (all at once), PNGs with their parameters embedded.

    Routes call this after the job has given its slot back, so the next generation runs meanwhile.
    """
    params = request.parameters()
    return encode_images(generation.images, fmt,
                         [embedded_parameters(runner.route, params, meta) for meta in generation.metadata],
                         compress_level)


def send_json(data: Any) -> str:
    """Serialise a JSON body (plain data, or dataclasses under their wire names) for the current response."""
    bottle.response.content_type = "application/json"
    return json.dumps(to_wire(data), ensure_ascii=False)
