"""create_app(settings): the Bottle app with every route, the error plugin, CORS, metrics and the access log.

Building the app starts nothing: no socket, no thread, no model load. ``serve.py`` runs it
on Cheroot.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

import bottle

from pico.config import Settings
from pico.errors import Unauthorized
from pico.jobs import Jobs
from pico.server import a1111, api, models, openai, playground
from pico.server.events import streams
from pico.server.errors import ErrorPlugin, abort_with, install_error_pages
from pico.server.http import send_json
from pico.server.metrics import CONTENT_TYPE, Metrics
from pico.server.openapi import RouteDoc, docs_page, document
from pico.server.service import Service

if TYPE_CHECKING:
    from pico.pipelines.engine import Engine

log = logging.getLogger("pico")

CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Content-Type, Authorization, X-API-Key"
CORS_EXPOSE = "X-Pico-Job, Retry-After"
SERVER_TAG = "Server"


def create_app(settings: Settings, engine: "Engine | None" = None, jobs: Jobs | None = None) -> bottle.Bottle:
    """The PICO WSGI app for ``settings``; pass ``engine`` to share one that exists.

    ``engine`` may be anything with Engine's methods, and ``jobs`` the Jobs that run on it
    (``pico.ray`` passes its cluster backend and cluster-wide jobs).
    """
    if engine is None:
        from pico.pipelines.engine import Engine

        engine = Engine(settings)
    if jobs is None:
        jobs = Jobs(engine.generate_batch, settings.threadsmax, settings.queue,
                    batch_window=settings.batch_window_ms / 1000, max_images=settings.max_batch,
                    batch_key=engine.batch_key)
    service = Service(settings, engine, jobs)
    metrics = Metrics(service)
    app = bottle.Bottle(autojson=False)
    app.config["pico.service"] = service
    app.install(ErrorPlugin(settings.verbose))
    install_error_pages(app, settings.verbose)
    app.add_hook("before_request", lambda: _before(settings))
    app.add_hook("after_request", lambda: _after(settings, metrics))
    api.install(app, service)
    streams.install(app, service, streams.StreamLimit(settings.max_streams))
    models.install(app, service)
    a1111.install(app, service)
    openai.install(app, service)
    playground.install(app)
    _install_meta_routes(app, metrics)
    return app


def _install_meta_routes(app: bottle.Bottle, metrics: Metrics) -> None:
    def openapi() -> str:
        return send_json(openapi_doc)

    def docs() -> str:
        bottle.response.content_type = "text/html; charset=utf-8"
        return docs_page()

    def prometheus() -> bytes:
        bottle.response.content_type = CONTENT_TYPE
        return metrics.render()

    app.route("/openapi.json", "GET", openapi,
              doc=RouteDoc("This document (OpenAPI 3.1)", SERVER_TAG, response={"type": "object"}))
    app.route("/docs", "GET", docs, doc=RouteDoc("A readable page of this document", SERVER_TAG,
                                                 response={"type": "string"}, response_type="text/html"))
    app.route("/metrics", "GET", prometheus, doc=RouteDoc(
        "Prometheus metrics: requests, generations, slots, queue, models, GPU memory", SERVER_TAG,
        response={"type": "string"}, response_type="text/plain"))
    openapi_doc = document(app)  # built once, when every route is in: a broken document fails at start


# Answered without an API key: health for load balancers, the API's description, image URLs
# (their tokens are unguessable, and <img> tags cannot send a key), and the playground page and its
# files (static: the page asks for the key and sends it with every call it makes).
OPEN_PATHS = ("/api/v1/health", "/openapi.json", "/docs", "/", "/playground")
OPEN_PREFIXES = ("/v1/images/files/", "/playground/")


def _before(settings: Settings) -> None:
    bottle.request.environ["pico.start"] = time.perf_counter()
    if bottle.request.method == "OPTIONS":
        raise bottle.HTTPResponse(status=204)
    path = bottle.request.path
    if settings.api_key and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
        _authorize(settings.api_key)


def _authorize(key: str) -> None:
    """Require the API key: ``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or as a Basic password."""
    header = bottle.request.get_header("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer":
        supplied = token.strip()
    elif scheme.lower() == "basic":  # A1111 clients (webuiapi's set_auth) send the key as the password
        supplied = (bottle.request.auth or ("", ""))[1]
    else:
        supplied = bottle.request.get_header("X-API-Key", "")
    if supplied and hmac.compare_digest(supplied.encode("utf-8"), key.encode("utf-8")):
        return
    bottle.response.set_header("WWW-Authenticate", 'Bearer realm="pico"')
    abort_with(Unauthorized(
        "This server needs an API key" if not supplied else "The API key is wrong",
        hint="Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."))


def _after(settings: Settings, metrics: Metrics) -> None:
    _cors(settings.cors_origin)
    environ = bottle.request.environ
    seconds = time.perf_counter() - environ.get("pico.start", time.perf_counter())
    note = dict(environ.get("pico.log", {}))
    if "pico.error" in environ:
        note["error"] = environ["pico.error"]
    route = environ.get("bottle.route")
    metrics.observe_request(route.rule if route else "unmatched", bottle.request.method,
                            bottle.response.status_code)
    extra = "".join(f" {k}={v}" for k, v in note.items())
    log.info("%s %s %s %.3fs%s", bottle.request.method, bottle.request.path, bottle.response.status_code,
             seconds, extra)


def _cors(allowed: str) -> None:
    """Allow browser calls from the origins in --cors-origin ("*" for any, or a comma-separated list)."""
    origin = bottle.request.get_header("Origin")
    if allowed.strip() == "*":
        granted = "*"
    elif origin and origin in {o.strip() for o in allowed.split(",")}:
        granted = origin
        bottle.response.add_header("Vary", "Origin")
    else:
        return
    bottle.response.set_header("Access-Control-Allow-Origin", granted)
    bottle.response.set_header("Access-Control-Expose-Headers", CORS_EXPOSE)
    if bottle.request.method == "OPTIONS":
        bottle.response.set_header("Access-Control-Allow-Methods", CORS_METHODS)
        bottle.response.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
        bottle.response.set_header("Access-Control-Max-Age", "600")
