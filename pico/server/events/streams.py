"""Event streams over HTTP (Server-Sent Events): following any job, and generations that answer as a stream.

- ``GET /api/v1/jobs/<id>/events[?previews=N]`` follows a job whatever started it: queued (with its
  place), started, step, preview (every N steps), then done, failed or cancelled. These streams hold
  a server thread each, so at most ``--max-streams`` are open at once (503 beyond), and one whose
  client goes away ends within ``POLL_SECONDS``; the job goes on.
- A generation request that asks for ``Accept: text/event-stream`` runs on a thread of its own while
  its request thread streams the same events, ending with done (carrying the response), failed
  (the error) or cancelled. Its client leaving cancels the job, as for a plain request. Requests
  refused before they become jobs (invalid, busy) get a plain error response, never a stream.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import bottle

from pico.catalog.pipelines import PipelineInfo
from pico.errors import Busy, Cancelled, InvalidRequest, PicoError
from pico.jobs import preview_steps
from pico.schemas.fields import to_wire
from pico.schemas.requests import MAX_STEPS, GenerationRequest
from pico.schemas.results import Generation
from pico.server.connection import liveness
from pico.server.errors import render, unexpected
from pico.server.events.follow import JobWatcher, Update, follow, jpeg_base64
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.jobs import Job
    from pico.server.service import Service

log = logging.getLogger("pico")

EVENT_STREAM = "text/event-stream"
RETRY_AFTER_SECONDS = 2
TAG = "PICO API"


def wants_event_stream() -> bool:
    """True when the current request asks to be answered with an event stream (Accept: text/event-stream)."""
    return EVENT_STREAM in bottle.request.get_header("Accept", "")


def preview_interval() -> int:
    """The current request's ``previews`` query parameter: a preview every N steps (0, the default: none)."""
    text = bottle.request.query.get("previews", "").strip()
    if not text:
        return 0
    if not text.isdigit() or not 0 <= int(text) <= MAX_STEPS:
        raise InvalidRequest(f"previews must be a whole number of steps from 0 to {MAX_STEPS}, got {text!r}",
                             field="previews")
    return int(text)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event: its name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"


class StreamLimit:
    """At most ``limit`` event streams open at once; a request beyond gets 503 at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Count one more open stream, or raise Busy when ``limit`` are open."""
        with self._lock:
            if self._open >= self.limit:
                raise Busy(f"All {self.limit} event streams are open (--max-streams); close one or retry shortly.",
                           retry_after=RETRY_AFTER_SECONDS)
            self._open += 1

    def give_back(self) -> None:
        """One stream closed."""
        with self._lock:
            self._open -= 1

    @property
    def open(self) -> int:
        """Streams open now."""
        return self._open


class EventStream:
    """A WSGI body of events that runs ``cleanup`` exactly once when the server closes it, even if never read."""

    def __init__(self, events: Iterable[bytes], cleanup: Callable[[], None]):
        self._events = iter(events)
        self._cleanup = cleanup
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._events
        finally:  # also when the body ends before its first event, where Bottle never calls close()
            self.close()

    def close(self) -> None:
        """Called by the WSGI server when the response ends or its client went away."""
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._cleanup()


def answer_with_stream(events: Iterable[bytes], cleanup: Callable[[], None], job: "Job | None" = None) -> EventStream:
    """Set the event-stream headers on the current response and wrap its body."""
    response = bottle.response
    response.content_type = EVENT_STREAM
    response.set_header("Cache-Control", "no-cache")
    response.set_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
    if job is not None:
        response.set_header("X-Pico-Job", job.id)
    return EventStream(events, cleanup)


@dataclass
class StreamedJob:
    """A generation run on a thread of its own for a request answered with an event stream."""

    watcher: JobWatcher
    job: "Job | None" = None
    result: Any = None  # what ``respond`` made of the generation
    error: BaseException | None = None
    admitted: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def start_streamed_job(service: "Service", pipeline: PipelineInfo, request: GenerationRequest, origin: str,
                       respond: Callable[["Job", Generation], Any], watcher: JobWatcher) -> StreamedJob:
    """Run ``request`` as a job on its own thread; return once it is admitted (queued or running).

    ``respond`` turns the finished job's generation into the stream's result (encoding happens
    there, after the slot is given back). A request refused before it became a job (busy,
    shutting down) raises here, so the client gets a plain error response.
    """
    alive = liveness(bottle.request.environ)
    run = StreamedJob(watcher)

    def on_start(job: "Job") -> None:
        run.job = job
        job.watch(watcher)
        run.admitted.set()

    def work() -> None:
        try:
            job, generation = service.jobs.run(pipeline.route, request, on_start=on_start, alive=alive,
                                               origin=origin)
            run.result = respond(job, generation)
        except BaseException as exc:  # noqa: BLE001 - handed to the stream, which tells its client
            run.error = exc
        finally:
            run.done.set()
            run.admitted.set()
            watcher.changed()

    threading.Thread(target=work, name="pico-streamed-job", daemon=True).start()
    run.admitted.wait()
    if run.job is None:
        raise run.error if run.error is not None else RuntimeError("the job ended before it started")
    return run


def finish_streamed_job(service: "Service", run: StreamedJob) -> None:
    """After the stream: stop watching, and cancel the job if its client left before it ended."""
    job = run.job
    job.unwatch(run.watcher)
    if not run.done.is_set():
        log.info("job %s: its event stream's client went away; cancelling it", job.id)
        service.jobs.cancel(job.id)
    else:
        log.info("job %s: streamed to the end (%s, %d image(s), %.3fs)", job.id, job.state.value, job.images,
                 job.elapsed)


def progress_event(update: Update) -> bytes:
    """An update of :func:`follow` as a PICO event (previews as small base64 JPEGs)."""
    if update.kind == "heartbeat":
        return HEARTBEAT
    data = update.data
    if update.kind == "preview":
        first = update.images[0]
        data = {**data, "Width": first.width, "Height": first.height,
                "Images": [jpeg_base64(image) for image in update.images]}
    return sse(update.kind, data)


def ending_event(service: "Service", job: "Job", result: Any = None, error: BaseException | None = None,
                 streamed: bool = False) -> bytes:
    """The last event of a stream: done, failed or cancelled.

    A streamed generation (``streamed``) ends with what its own thread saw: the response
    (``result``) or the error in full. A follower of any job ends with the job's final state.
    """
    status = to_wire(job.describe())
    if not streamed:
        if job.state.value == "cancelled":
            return sse("cancelled", {"Job": status, "Message": job.error})
        if job.state.value == "failed":
            return sse("failed", {"Job": status, "Error": {"Code": job.error}})
        return sse("done", {"Job": status})
    if error is None:
        return sse("done", {"Job": status, "Response": result})
    if isinstance(error, Cancelled):
        return sse("cancelled", {"Job": status, "Message": error.message})
    if not isinstance(error, PicoError):
        error = unexpected(error, service.settings.verbose)
    _, _, body = render(error, "pico", service.settings.verbose)
    return sse("failed", {"Job": status, **body})


def stream_generation(service: "Service", pipeline: PipelineInfo, request: GenerationRequest,
                      respond: Callable[["Job", Generation], Any], origin: str = "pico") -> EventStream:
    """Answer a generation request with its job's events; the done event carries ``respond``'s result."""
    every = preview_interval()
    watcher = JobWatcher(preview_steps(every))
    run = start_streamed_job(service, pipeline, request, origin, respond, watcher)
    job, alive = run.job, liveness(bottle.request.environ)

    def events() -> Iterator[bytes]:
        updates = follow(job, watcher, service.jobs.position, run.done.is_set, alive, from_admission=True)
        for update in updates:
            yield progress_event(update)
        if run.done.is_set():
            yield ending_event(service, job, run.result, run.error, streamed=True)

    return answer_with_stream(events(), lambda: finish_streamed_job(service, run), job)


def install(app: bottle.Bottle, service: "Service", limit: StreamLimit) -> None:
    """Add ``GET /api/v1/jobs/<id>/events``."""

    def job_events(job_id: str) -> EventStream:
        job = service.jobs.get(job_id)
        every = preview_interval()
        limit.take()
        watcher = JobWatcher(preview_steps(every))
        job.watch(watcher)
        alive = liveness(bottle.request.environ)

        def ended() -> bool:
            # A job another front door runs (pico serve --ray) is a copy: it is read again from the board.
            service.jobs.refresh(job)
            return job.finished is not None

        def events() -> Iterator[bytes]:
            for update in follow(job, watcher, service.jobs.position, ended, alive):
                yield progress_event(update)
            if job.finished is not None:
                yield ending_event(service, job)

        def cleanup() -> None:
            job.unwatch(watcher)
            limit.give_back()

        return answer_with_stream(events(), cleanup)

    app.route("/api/v1/jobs/<job_id>/events", "GET", job_events, doc=RouteDoc(
        "Follow a job as Server-Sent Events: queued (Position), started, step (Step, Steps, StepsPerSecond, "
        "SecondsLeft), preview (small JPEGs, with ?previews=N every N steps), then done, failed or cancelled. "
        "At most --max-streams at once (503 beyond).", TAG, response={"type": "string"},
        response_type=EVENT_STREAM, query=(("previews", "A preview every N steps (0, the default: none)"),)))
