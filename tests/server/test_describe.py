"""The server describes itself: /openapi.json (valid, complete), /docs, /metrics."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from tests.server.test_api import body_for


def test_openapi_document_is_valid_and_lists_every_route(server):
    doc = server.get("/openapi.json").json
    validate(doc)
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    from pico.config import Settings
    from pico.server.app import create_app

    app = create_app(Settings(device="cpu"))
    served = {(route.method, re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.rule)) for route in app.routes}
    assert listed == served
    for method, path in listed:  # every listed route answers something other than "no such route"
        concrete = re.sub(r"\{\w+\}", "nothing", path)
        reply = server.request(method, concrete, raw=b"" if method == "POST" else None)
        assert not (reply.status == 404 and b"No route" in reply.body), (method, path)


def test_openapi_schemas_come_from_the_request_dataclasses(server):
    doc = server.get("/openapi.json").json
    schema = doc["components"]["schemas"]["StableDiffusionXlRequest"]
    assert schema["required"] == ["Phrase"]
    assert schema["properties"]["GuidanceScale"]["default"] == 5.0
    assert schema["properties"]["Total"]["maximum"] == 5
    operation = doc["paths"]["/api/v1/stable-diffusion-xl"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StableDiffusionXlRequest"}
    assert "multipart/form-data" in doc["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]


def test_docs_page_is_served_without_a_cdn(server):
    reply = server.get("/docs")
    assert reply.status == 200
    assert reply.header("Content-Type").startswith("text/html")
    page = reply.body.decode()
    assert 'fetch("/openapi.json")' in page
    assert "https://" not in page and "<script src" not in page


def metric_values(server) -> dict[tuple[str, tuple], float]:
    text = server.get("/metrics").body.decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_parse_and_move(server):
    before = metric_values(server)
    assert server.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Total=2)).status == 200
    assert server.post("/api/v1/stable-diffusion", {"Total": 9}).status == 422
    after = metric_values(server)
    ok = ("pico_requests_total", (("method", "POST"), ("route", "/api/v1/stable-diffusion"), ("status", "200")))
    bad = ("pico_requests_total", (("method", "POST"), ("route", "/api/v1/stable-diffusion"), ("status", "422")))
    assert after[ok] == before.get(ok, 0) + 1
    assert after[bad] == before.get(bad, 0) + 1
    images = ("pico_generation_images_sum", (("pipeline", "stable-diffusion"),))
    assert after[images] == before.get(images, 0) + 2
    count = ("pico_generation_seconds_count", (("pipeline", "stable-diffusion"),))
    assert after[count] == before.get(count, 0) + 1
    assert after[("pico_busy_slots", ())] == 0
    assert after[("pico_slots", ())] == 1
    assert after[("pico_queue_length", ())] == 0
    assert after[("pico_loaded_models", ())] >= 1
    load = ("pico_model_load_seconds", (("model", "stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)"),))
    assert 0 < after[load] < 120
    assert not any(name.startswith("pico_gpu_memory") for name, _ in after)  # a CPU server has none
