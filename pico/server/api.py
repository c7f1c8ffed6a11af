"""The PICO API (/api/v1): the original's routes, health, status, jobs, one route per pipeline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import bottle

from pico import __version__
from pico.catalog.pipelines import PIPELINES, PipelineInfo
from pico.schemas.images import to_base64
from pico.schemas.requests import GenerationRequest
from pico.schemas.responses import (
    Health,
    JobStatus,
    LoadedModelStatus,
    PicoImage,
    PicoResponse,
    ReplicaStatus,
    ServerStatus,
)
from pico.schemas.results import Generation
from pico.schemas.fields import to_wire
from pico.server.events.streams import stream_generation, wants_event_stream
from pico.server.http import encoded_images, read_json_body, run_job, send_json
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

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
    for pipeline in PIPELINES:
        app.route(f"{PREFIX}/{pipeline.route}", "POST", _generation_route(service, pipeline),
                  doc=RouteDoc(pipeline.summary, TAG, request=pipeline.request_type, response=PicoResponse))


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
        replicas=replica_statuses(service),
        models=[LoadedModelStatus.from_dict(model) for model in service.engine.model_status()],
    )


def replica_statuses(service: "Service") -> list[ReplicaStatus]:
    """The engine replicas of a server on Ray (an Engine has none)."""
    return [ReplicaStatus(id=r["id"], node=r["node"], pid=r["pid"], device=r["device"], slots=r["slots"],
                          slots_in_use=r["busy"], loaded_models=r["loaded"]) for r in service.engine.replicas()]


def _generation_route(service: "Service", pipeline: PipelineInfo):
    def generate() -> str:
        request = pipeline.request_type.parse(read_json_body(service), service.settings.max_pixels)
        if wants_event_stream():  # the job's events as they happen; the last one carries this response
            return stream_generation(service, pipeline, request, lambda job, generation: to_wire(pico_response(
                pipeline, request, generation, job.elapsed, service.settings.png_compress_level)))
        job, generation = run_job(service, pipeline, request)
        return send_json(pico_response(pipeline, request, generation, job.elapsed,
                                       service.settings.png_compress_level))

    generate.__doc__ = pipeline.summary
    return generate


def pico_response(pipeline: PipelineInfo, request: GenerationRequest, generation: Generation, elapsed: float,
                  compress_level: int) -> PicoResponse:
    """The PicoResponse for a generation: each image encoded with its parameters embedded."""
    images = [
        PicoImage(name=generation.name, image_base64=to_base64(data), metadata=meta)
        for data, meta in zip(encoded_images(pipeline, request, generation, request.output_format, compress_level),
                              generation.metadata)
    ]
    return PicoResponse(elapsed_seconds=round(elapsed, 3), images=images,
                        ignored_fields=request.ignored_fields, warnings=generation.warnings)


