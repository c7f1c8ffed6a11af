"""The playground: one page at ``/`` (and ``/playground``) to generate, watch and cancel from a browser.

Plain HTML, CSS and JavaScript shipped in the package: no CDN, no build step, works offline.
The files are open without the API key (they hold nothing); the page asks for the key and sends
it with every API call it makes.
"""

from __future__ import annotations

from importlib import resources

import bottle

from pico.server.openapi import RouteDoc

TAG = "Server"
FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def _file(name: str) -> str:
    return resources.files("pico.server.playground").joinpath(name).read_text("utf-8")


def install(app: bottle.Bottle) -> None:
    """Add ``GET /``, ``GET /playground`` and the page's files."""

    def page() -> str:
        bottle.response.content_type = "text/html; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-cache")
        return _file("index.html")

    def asset(name: str):
        def serve_file() -> str:
            bottle.response.content_type = FILES[name]
            bottle.response.set_header("Cache-Control", "no-cache")
            return _file(name)

        return serve_file

    doc = RouteDoc("The playground: a page to generate, watch and cancel from a browser", TAG,
                   response={"type": "string"}, response_type="text/html")
    app.route("/", "GET", page, doc=doc)
    app.route("/playground", "GET", page, doc=doc)
    for name, kind in FILES.items():
        app.route(f"/playground/{name}", "GET", asset(name), doc=RouteDoc(
            f"The playground's {name}", TAG, response={"type": "string"}, response_type=kind.split(";")[0]))
