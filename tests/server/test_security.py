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


def test_only_health_and_the_api_description_stay_open(keyed):
    import re

    doc = keyed.get("/openapi.json")
    assert doc.status == 200
    docs = keyed.get("/docs")
    assert docs.status == 200 and docs.header("Content-Type").startswith("text/html")
    # image URLs stay open too: their tokens are unguessable, and an <img> tag cannot send a key;
    # so does the playground page and its static files (it asks for the key and sends it itself)
    open_routes = {("GET", "/api/v1/health"), ("GET", "/openapi.json"), ("GET", "/docs"),
                   ("GET", "/v1/images/files/{token}"), ("GET", "/"), ("GET", "/playground"),
                   ("GET", "/playground/app.js"), ("GET", "/playground/style.css")}
    closed = []
    for path, operations in doc.json["paths"].items():
        for method in operations:
            if (method.upper(), path) in open_routes:
                continue
            reply = keyed.request(method.upper(), re.sub(r"\{\w+\}", "nothing", path),
                                  raw=b"{}" if method == "post" else None)
            closed.append((method.upper(), path, reply.status))
    assert len(closed) >= 30
    assert [c for c in closed if c[2] != 401] == []
