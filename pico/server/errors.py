"""The one place the server turns errors into HTTP responses."""

from __future__ import annotations

import json
import logging
import traceback

import bottle

from pico.errors import Busy, InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, PicoError

log = logging.getLogger("pico")


def error_body(error: PicoError) -> str:
    """The JSON body of every PICO API error: {"Error": {"Code", "Message", "Field"?, "Hint"?}}."""
    return json.dumps({"Error": error.to_dict()})


def apply_error(error: PicoError) -> str:
    """Set status and headers on the current response for ``error``; return its JSON body."""
    bottle.response.status = error.status
    bottle.response.content_type = "application/json"
    if isinstance(error, Busy):
        bottle.response.set_header("Retry-After", str(error.retry_after))
    bottle.request.environ["pico.error"] = error.code
    return error_body(error)


def unexpected(exc: BaseException, verbose: bool) -> InternalError:
    """An InternalError for an exception nobody expected: logged in full, details shown only when verbose."""
    log.error("unexpected error: %s", "".join(traceback.format_exception(exc)).rstrip())
    if verbose:
        return InternalError(f"{type(exc).__name__}: {exc}", hint="".join(traceback.format_exception(exc))[-2000:])
    return InternalError("The server failed to process the request; the details are in its log.")


class ErrorPlugin:
    """Bottle plugin: a PicoError raised by a route becomes its JSON error response; anything else a 500."""

    name = "pico-errors"
    api = 2

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def apply(self, callback, route):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except PicoError as exc:
                return apply_error(exc)
            except Exception as exc:  # noqa: BLE001 - the server must answer, whatever happened
                return apply_error(unexpected(exc, self.verbose))

        return wrapper


def install_error_pages(app: bottle.Bottle, verbose: bool) -> None:
    """Bottle's own errors (no route, wrong method, ...) answer in the same JSON shape."""

    def handler(http_error: bottle.HTTPError) -> str:
        status = http_error.status_code
        if status == 404:
            error: PicoError = NotFound(
                f"No route {bottle.request.method} {bottle.request.path}; see GET /openapi.json for the routes"
            )
        elif status == 405:
            allowed = http_error.headers.get("Allow", "")
            error = MethodNotAllowed(f"{bottle.request.path} does not accept {bottle.request.method}; "
                                     f"it accepts {allowed}")
        elif status == 413:
            error = PayloadTooLarge("The request body is too large")
        elif http_error.exception is not None:
            error = unexpected(http_error.exception, verbose)
        else:
            error = PicoError(str(http_error.body or "error"))
            error.status = status
        apply_error(error)
        return error_body(error)

    for status in (400, 404, 405, 413, 500):
        app.error_handler[status] = handler
