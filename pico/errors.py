"""PICO's typed errors: raised in the core, translated once at each edge.

Each kind carries the HTTP status the server answers with, a stable machine-readable
code, and the exit status the CLI ends with. Messages say what was wrong and how to
fix it; ``field`` names the request field at fault, ``hint`` suggests a way out.
"""

from __future__ import annotations


class PicoError(Exception):
    """Base of every error PICO reports to a user."""

    status = 500
    code = "INTERNAL_SERVER_ERROR"
    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint
        self.detail = detail  # what the library underneath said: for the log, and for clients only with --verbose

    def to_dict(self, verbose: bool = False) -> dict:
        """The body of the error as both edges report it: Code, Message, Field/Hint when known, Detail if verbose."""
        body = {"Code": self.code, "Message": self.message}
        if self.field:
            body["Field"] = self.field
        if self.hint:
            body["Hint"] = self.hint
        if verbose and self.detail:
            body["Detail"] = self.detail
        return body


class MalformedRequest(PicoError):
    """The body is not JSON, or not a JSON object."""

    status = 400
    code = "BAD_REQUEST"
    exit_code = 2


class Unauthorized(PicoError):
    """No API key, or the wrong one."""

    status = 401
    code = "UNAUTHORIZED"
    exit_code = 2


class ModelNotAllowed(PicoError):
    """The model is outside what this server allows requests to load."""

    status = 403
    code = "MODEL_NOT_ALLOWED"
    exit_code = 3


class NotFound(PicoError):
    """No such route, job or resource."""

    status = 404
    code = "NOT_FOUND"
    exit_code = 2


class MethodNotAllowed(PicoError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "METHOD_NOT_ALLOWED"
    exit_code = 2


class Cancelled(PicoError):
    """The generation was cancelled before it finished."""

    status = 409
    code = "CANCELLED"
    exit_code = 130


class PayloadTooLarge(PicoError):
    """The request body is over the configured limit."""

    status = 413
    code = "PAYLOAD_TOO_LARGE"
    exit_code = 2


class InvalidRequest(PicoError):
    """A field is missing, of the wrong type or out of range."""

    status = 422
    code = "INVALID_REQUEST"
    exit_code = 2


class ModelUnavailable(PicoError):
    """The model could not be found (404) or loaded (502)."""

    code = "MODEL_UNAVAILABLE"
    exit_code = 3

    def __init__(self, message: str, *, status: int = 404, field: str | None = "Model", hint: str | None = None,
                 detail: str | None = None):
        super().__init__(message, field=field, hint=hint, detail=detail)
        self.status = status


class Busy(PicoError):
    """Every generation slot is taken and the queue, if any, is full."""

    status = 503
    code = "GPU_BUSY"
    exit_code = 4

    def __init__(self, message: str = "All generation slots are busy; retry shortly.", *, retry_after: int = 1, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class OutOfMemory(PicoError):
    """The device ran out of memory during a generation."""

    status = 503
    code = "OUT_OF_MEMORY"
    exit_code = 5


class ReplicaFailed(Busy):
    """The Ray replica running the generation died before it finished (``--ray``); a retry runs on another.

    Answered like Busy (503 with Retry-After; 429 on the OpenAI routes): retrying is the fix.
    """

    code = "REPLICA_FAILED"
    exit_code = 6


class ClusterUnavailable(Busy):
    """The Ray cluster cannot be reached (``--ray``): at start, or lost while serving; retry once it is back."""

    code = "CLUSTER_UNAVAILABLE"
    exit_code = 6


class OutputError(PicoError):
    """An output folder or file cannot be written."""

    code = "OUTPUT_ERROR"
    exit_code = 1


class InternalError(PicoError):
    """An unexpected failure; details only in verbose mode."""


class RequestTimeout(PicoError):
    """The client did not send its request line and headers within the server's deadline."""

    status = 408
    code = "REQUEST_TIMEOUT"
    exit_code = 2


class UriTooLong(PicoError):
    """The request line alone is over the server's header limit."""

    status = 414
    code = "URI_TOO_LONG"
    exit_code = 2


class HeadersTooLarge(PicoError):
    """The request line and headers together are over the server's limit."""

    status = 431
    code = "HEADERS_TOO_LARGE"
    exit_code = 2
