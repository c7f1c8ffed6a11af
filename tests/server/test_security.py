"""Access control over real HTTP: the API key, open health, the model allow-list."""

from __future__ import annotations

import pytest

from tests.server.conftest import API_KEY
from tests.server.test_api import body_for


def test_health_stays_open_for_load_balancers(keyed):
    assert keyed.get("/api/v1/health").json == {"Status": "Idle"}


@pytest.mark.parametrize("headers, message", [
    ({}, "This server needs an API key"),
    ({"Authorization": "Bearer nope"}, "The API key is wrong"),
    ({"X-API-Key": "nope"}, "The API key is wrong"),
    ({"Authorization": f"Basic {API_KEY}"}, "This server needs an API key"),
])
def test_missing_or_wrong_key_is_401(keyed, headers, message):
    reply = keyed.post("/api/v1/stable-diffusion", body_for("stable-diffusion"), headers=headers)
    assert reply.status == 401
    assert reply.json["Error"]["Code"] == "UNAUTHORIZED"
    assert reply.json["Error"]["Message"] == message
    assert reply.header("WWW-Authenticate") == 'Bearer realm="pico"'
    assert keyed.get("/api/v1/status", headers=headers).status == 401
    assert keyed.get("/metrics", headers=headers).status == 401


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}])
def test_right_key_in_either_header(keyed, headers):
    reply = keyed.post("/api/v1/stable-diffusion", body_for("stable-diffusion"), headers=headers)
    assert reply.status == 200


def test_a1111_routes_need_the_key_too(keyed):
    reply = keyed.get("/sdapi/v1/sd-models")
    assert reply.status == 401
    assert reply.json["error"] == "UNAUTHORIZED"


def test_no_key_on_a_public_address_warns_at_start(tmp_path, tiny_models):
    from tests.server.live import LiveServer

    live = LiveServer(tiny_models, "--host", "0.0.0.0", log=tmp_path / "serve.log")  # the last --host wins
    log = live.log_text()
    live.stop()
    assert "no API key set and listening on 0.0.0.0" in log
