"""What the routes of every protocol share: reading JSON bodies, answering JSON, running jobs, encoding images."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import bottle

from pico.catalog.pipelines import PipelineInfo
from pico.schemas.fields import to_wire
from pico.schemas.images import embedded_parameters, encode_images
from pico.schemas.requests import GenerationRequest
from pico.schemas.results import Generation
from pico.server.body import parse_json, read_body
from pico.server.connection import liveness

if TYPE_CHECKING:
    from pico.jobs import Job
    from pico.server.service import Service


def run_job(service: "Service", pipeline: PipelineInfo, request: GenerationRequest,
            origin: str = "pico") -> tuple["Job", Generation]:
    """Run a request through the job slots (batched with others when it can be) for the current HTTP request.

    Its model, route and LoRAs are checked first, so a request that cannot run never waits for a slot.
    """
    service.engine.plan(request, pipeline.route)
    environ = bottle.request.environ
    job, generation = service.jobs.run(pipeline.route, request, on_start=announce_job, alive=liveness(environ),
                                       origin=origin)
    environ["pico.log"] = {"images": job.images, "seed": job.seeds[0]}
    return job, generation


def run_jobs(service: "Service", pipeline: PipelineInfo, requests: list[GenerationRequest],
             origin: str = "pico") -> tuple["Job", list[Generation]]:
    """Run requests one after another in one job and one slot, for the current HTTP request."""
    for request in requests[:1]:  # they share model and LoRAs (A1111's n_iter): check once, before any slot
        service.engine.plan(request, pipeline.route)
    environ = bottle.request.environ
    job, generations = service.jobs.run_many(pipeline.route, requests, on_start=announce_job,
                                             alive=liveness(environ), origin=origin)
    environ["pico.log"] = {"images": job.images, "seed": job.seeds[0]}
    return job, generations


def read_json_body(service: "Service") -> Any:
    """The current request's body as JSON, within the body limit."""
    return parse_json(read_body(bottle.request.environ, service.settings.max_body_mb * 1024 * 1024))


def announce_job(job: "Job") -> None:
    """Tell the client its job id (X-Pico-Job), as soon as the job exists."""
    bottle.response.set_header("X-Pico-Job", job.id)


def encoded_images(pipeline: PipelineInfo, request: GenerationRequest, generation: Generation, fmt: str,
                   compress_level: int) -> list[bytes]:
    """Each image of a generation encoded as ``fmt`` (all at once), PNGs with their parameters embedded.

    Routes call this after the job has given its slot back, so the next generation runs meanwhile.
    """
    params = request.parameters()
    return encode_images(generation.images, fmt,
                         [embedded_parameters(pipeline.route, params, meta) for meta in generation.metadata],
                         compress_level)


def send_json(data: Any) -> str:
    """Serialise a JSON body (plain data, or dataclasses under their wire names) for the current response."""
    bottle.response.content_type = "application/json"
    return json.dumps(to_wire(data), ensure_ascii=False)
