"""GET /metrics: Prometheus metrics of requests, generations, slots, queue, models and GPU memory."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from pico.catalog.pipelines import PIPELINES

if TYPE_CHECKING:
    from pico.jobs import Job
    from pico.schemas.results import Generation
    from pico.server.service import Service

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECOND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
# Every label value comes from a fixed set, so no client can add series: methods from this list, statuses
# from the HTTP standard, routes from the route table, pipelines from the catalog, models from those loaded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"})
OTHER = "OTHER"
STATUSES = frozenset(str(status.value) for status in HTTPStatus)
PIPELINE_ROUTES = frozenset(info.route for info in PIPELINES)


class Metrics:
    """One registry per app, so two apps in one process never mix their numbers."""

    def __init__(self, service: "Service"):
        self.registry = CollectorRegistry()
        self.requests = Counter("pico_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.generation_seconds = Histogram("pico_generation_seconds", "Seconds per generation, by pipeline",
                                            ["pipeline"], buckets=SECOND_BUCKETS, registry=self.registry)
        self.generation_images = Histogram("pico_generation_images", "Images per generation, by pipeline",
                                           ["pipeline"], buckets=(1, 2, 3, 4, 5, 8, 16), registry=self.registry)
        self.failures = Counter("pico_generation_failures", "Generations that failed or were cancelled",
                                ["pipeline", "state"], registry=self.registry)
        jobs, engine = service.jobs, service.engine
        Gauge("pico_busy_slots", "Generation slots in use", registry=self.registry).set_function(
            lambda: jobs.counts()["SlotsInUse"])
        Gauge("pico_slots", "Generation slots", registry=self.registry).set_function(lambda: jobs.counts()["Slots"])
        Gauge("pico_queue_length", "Requests waiting for a slot", registry=self.registry).set_function(
            lambda: jobs.counts()["QueueLength"])
        Gauge("pico_loaded_models", "Models resident in memory", registry=self.registry).set_function(
            lambda: len(engine.loaded_models()))
        self.registry.register(_EngineCollector(engine))
        jobs.listeners.append(self.observe_job)

    def observe_job(self, job: "Job", generation: "Generation | None") -> None:
        """Record a finished job."""
        pipeline = job.pipeline if job.pipeline in PIPELINE_ROUTES else "other"
        if generation is None:
            self.failures.labels(pipeline, job.state.value).inc()
            return
        self.generation_seconds.labels(pipeline).observe(generation.elapsed)
        self.generation_images.labels(pipeline).observe(len(generation.images))

    def observe_request(self, route: str, method: str, status: int) -> None:
        """Record one HTTP request; ``route`` is a route rule or "unmatched", unknown methods count as OTHER."""
        method = method if method in METHODS else OTHER
        status_label = str(status) if str(status) in STATUSES else OTHER
        self.requests.labels(route, method, status_label).inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class _EngineCollector:
    """Model load seconds and device memory, read from the engine at scrape time."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        loads = GaugeMetricFamily("pico_model_load_seconds", "Seconds the resident model took to load",
                                  labels=["model"])
        for name, seconds in self.engine.load_times().items():
            loads.add_metric([name], seconds)
        yield loads
        memory = self.engine.device_memory()
        if memory is not None:
            in_use, peak = memory
            yield GaugeMetricFamily("pico_gpu_memory_bytes", "Device memory allocated by PyTorch", value=in_use)
            yield GaugeMetricFamily("pico_gpu_memory_peak_bytes", "Most device memory allocated since start",
                                    value=peak)
