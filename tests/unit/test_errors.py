"""The error hierarchy: each kind's HTTP status, code and CLI exit status."""

from __future__ import annotations

import pytest

from pico import errors


@pytest.mark.parametrize("error, status, code, exit_code", [
    (errors.MalformedRequest("m"), 400, "BAD_REQUEST", 2),
    (errors.Unauthorized("m"), 401, "UNAUTHORIZED", 2),
    (errors.ModelNotAllowed("m"), 403, "MODEL_NOT_ALLOWED", 3),
    (errors.NotFound("m"), 404, "NOT_FOUND", 2),
    (errors.MethodNotAllowed("m"), 405, "METHOD_NOT_ALLOWED", 2),
    (errors.Cancelled("m"), 409, "CANCELLED", 130),
    (errors.PayloadTooLarge("m"), 413, "PAYLOAD_TOO_LARGE", 2),
    (errors.InvalidRequest("m"), 422, "INVALID_REQUEST", 2),
    (errors.ModelUnavailable("m"), 404, "MODEL_UNAVAILABLE", 3),
    (errors.ModelUnavailable("m", status=502), 502, "MODEL_UNAVAILABLE", 3),
    (errors.Busy(), 503, "GPU_BUSY", 4),
    (errors.OutOfMemory("m"), 503, "OUT_OF_MEMORY", 5),
    (errors.InternalError("m"), 500, "INTERNAL_SERVER_ERROR", 1),
])
def test_each_kind_has_its_status_code_and_exit(error, status, code, exit_code):
    assert (error.status, error.code, error.exit_code) == (status, code, exit_code)


def test_body_names_field_and_hint_only_when_known():
    assert errors.InvalidRequest("Total must be between 1 and 5, got 9", field="Total").to_dict() == {
        "Code": "INVALID_REQUEST", "Message": "Total must be between 1 and 5, got 9", "Field": "Total"}
    assert errors.OutOfMemory("oom", hint="fewer").to_dict() == {
        "Code": "OUT_OF_MEMORY", "Message": "oom", "Hint": "fewer"}
