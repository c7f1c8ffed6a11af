"""The one place the server turns errors into HTTP responses, in each protocol's own shape.

The PICO API answers ``{"Error": {"Code", "Message", "Field"?, "Hint"?}}``; the OpenAI routes
(``/v1/``) answer ``{"error": {"message", "type", "param", "code"}}`` with the statuses the
OpenAI SDKs expect; the AUTOMATIC1111 routes (``/sdapi/``) answer ``{"error", "detail"}``.
"""

from __future__ import annotations

import json
import logging
import re
import traceback

import bottle

from pico.errors import (
    Busy,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    OutOfMemory,
    PayloadTooLarge,
    PicoError,
)

log = logging.getLogger("pico")


def in_protocol_terms(error: PicoError, names: dict[str, str]) -> PicoError:
    """``error``, in place, with PICO field names replaced by those a protocol's client sent (``names``).

    The field is renamed; in the message and hint, whole words are renamed where the mapping is
    one to one (OpenAI's ``size`` stands for both Width and Height, so those words stay).
    """
    targets = list(names.values())
    words = {pico: theirs for pico, theirs in names.items() if targets.count(theirs) == 1}
    longest_first = sorted(words, key=len, reverse=True)  # "Hires.Strength" before "Hires"
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, longest_first)) + r")\b")
    error.field = names.get(error.field or "", error.field)
    error.message = pattern.sub(lambda match: words[match.group(1)], error.message)
    if error.hint:
        error.hint = pattern.sub(lambda match: words[match.group(1)], error.hint)
    return error


def style_for(path: str) -> str:
    """Which protocol's error shape a path speaks: "openai", "a1111" or "pico"."""
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/sdapi/"):
        return "a1111"
    return "pico"


def render(error: PicoError, style: str, verbose: bool = False) -> tuple[int, dict[str, str], dict]:
    """(status, headers, body) of ``error`` in a protocol's shape; ``verbose`` adds the library's own words."""
    headers = {}
    status = error.status
    if isinstance(error, Busy):
        headers["Retry-After"] = str(error.retry_after)
    if style == "openai":
        if isinstance(error, InvalidRequest):
            status = 400  # the OpenAI API reports bad parameters as 400
        elif isinstance(error, Busy):
            status = 429  # the SDKs back off and retry on 429, honouring Retry-After
        if status < 500 and status not in (408, 409, 429) or isinstance(error, OutOfMemory):
            headers["x-should-retry"] = "false"  # retrying cannot fix it
        body = {"error": {
            "message": error.message + (f" ({error.hint})" if error.hint else "")
            + (f" [{error.detail}]" if verbose and error.detail else ""),
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": error.field,
            "code": error.code.lower(),
        }}
    elif style == "a1111":
        body = {"error": error.code, "detail": error.message, "body": error.detail if verbose and error.detail else "",
                "errors": error.hint or ""}
    else:
        body = {"Error": error.to_dict(verbose)}
    return status, headers, body


def apply_error(error: PicoError, verbose: bool = False) -> str:
    """Set status and headers on the current response for ``error``; return its JSON body."""
    if error.detail:
        log.info("%s: %s (%s)", error.code, error.message, error.detail)
    status, headers, body = render(error, style_for(bottle.request.path), verbose)
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    for name, value in headers.items():
        bottle.response.set_header(name, value)
    bottle.request.environ["pico.error"] = error.code
    return json.dumps(body)


def abort_with(error: PicoError) -> None:
    """Stop handling the current request now and answer ``error`` (for hooks, outside any route)."""
    body = apply_error(error)
    raise bottle.HTTPResponse(body, status=bottle.response.status_code, headers=dict(bottle.response.headers))


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
                return apply_error(exc, self.verbose)
            except Exception as exc:  # noqa: BLE001 - the server must answer, whatever happened
                return apply_error(unexpected(exc, self.verbose), self.verbose)

        return wrapper


def install_error_pages(app: bottle.Bottle, verbose: bool) -> None:
    """Bottle's own errors (no route, wrong method, ...) answer in the same JSON shapes."""

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
        return apply_error(error, verbose)

    for status in (400, 404, 405, 413, 500):
        app.error_handler[status] = handler
