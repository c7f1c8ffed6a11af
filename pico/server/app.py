"""create_app(settings): the Bottle app with every route, the error plugin, CORS and the access log.

Building the app starts nothing: no socket, no thread, no model load. ``serve.py`` runs it
on Cheroot.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import bottle

from pico.config import Settings
from pico.jobs import Jobs
from pico.pipelines.engine import Engine
from pico.server import api
from pico.server.errors import ErrorPlugin, install_error_pages

log = logging.getLogger("pico")

CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Content-Type, Authorization, X-API-Key"
CORS_EXPOSE = "X-Pico-Job, Retry-After"


@dataclass
class Service:
    """What the routes share: settings, the engine and the job slots."""

    settings: Settings
    engine: Engine
    jobs: Jobs
    started: float = field(default_factory=time.time)


def create_app(settings: Settings, engine: Engine | None = None) -> bottle.Bottle:
    """The PICO WSGI app for ``settings``; pass ``engine`` to share one that exists."""
    engine = engine or Engine(settings)
    service = Service(settings, engine, Jobs(engine.generate, settings.threadsmax, settings.queue))
    app = bottle.Bottle(autojson=False)
    app.config["pico.service"] = service
    app.install(ErrorPlugin(settings.verbose))
    install_error_pages(app, settings.verbose)
    app.add_hook("before_request", _before)
    app.add_hook("after_request", lambda: _after(settings))
    api.install(app, service)
    return app


def _before() -> None:
    bottle.request.environ["pico.start"] = time.perf_counter()
    if bottle.request.method == "OPTIONS":
        raise bottle.HTTPResponse(status=204)


def _after(settings: Settings) -> None:
    _cors(settings.cors_origin)
    environ = bottle.request.environ
    seconds = time.perf_counter() - environ.get("pico.start", time.perf_counter())
    note = dict(environ.get("pico.log", {}))
    if "pico.error" in environ:
        note["error"] = environ["pico.error"]
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
