"""The PICO API over real HTTP, on a live `pico serve` with one slot and no queue."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from tests.conftest import b64, png_bytes
from tests.live import Background, wait_until

ROUTES = {
    "stable-diffusion": "StableDiffusion",
    "stable-diffusion-2": "StableDiffusion2",
    "stable-diffusion-xl": "StableDiffusionXL",
    "stable-diffusion-image-to-image": "StableDiffusionImageToImage",
    "stable-diffusion-image-variation": "StableDiffusionImageVariation",
    "stable-diffusion-inpaint": "StableDiffusionInpaint",
}
SEED_BODY = {"Phrase": "ginger cat"}  # the seed README's curl example
JOB_ID = re.compile(r"^\d{6}-[0-9a-f]{8}$")


def body_for(route: str, **extra) -> dict:
    image = b64(png_bytes())
    inputs = {
        "stable-diffusion-image-to-image": {"ImageBase64": image},
        "stable-diffusion-image-variation": {"ImageBase64": image},
        "stable-diffusion-inpaint": {"ImageBase64": image, "MaskImageBase64": image},
    }.get(route, {})
    return {**SEED_BODY, **inputs, "Steps": 2, **extra}


def decode_png(value: str) -> Image.Image:
    data = base64.b64decode(value)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


def test_health_is_idle_at_rest(server):
    reply = server.get("/api/v1/health")
    assert (reply.status, reply.json) == (200, {"Status": "Idle"})
    assert reply.header("Content-Type") == "application/json"


def test_the_seed_readme_example_as_written(server):
    reply = server.post("/api/v1/stable-diffusion-xl", {"Phrase": "ginger cat"})
    assert reply.status == 200
    data = reply.json
    assert set(data) == {"ElapsedSeconds", "Images", "IgnoredFields", "Warnings"}
    (image,) = data["Images"]
    assert image["Name"] == "StableDiffusionXL"
    assert decode_png(image["ImageBase64"]).size == (64, 64)
    assert image["Metadata"]["Quality"] == 50 and image["Metadata"]["Phrase"] == "ginger cat"
    job_id = reply.header("X-Pico-Job")
    assert JOB_ID.match(job_id)
    job = server.get(f"/api/v1/jobs/{job_id}").json
    assert (job["Id"], job["State"], job["Pipeline"], job["Seeds"]) == (
        job_id, "done", "stable-diffusion-xl", [image["Metadata"]["Seed"]])


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_answers_a_pico_response(server, route):
    reply = server.post(f"/api/v1/{route}", body_for(route, Total=2, Seed=10, Unknown=1))
    assert reply.status == 200, reply.body
    data = reply.json
    assert [i["Name"] for i in data["Images"]] == [ROUTES[route]] * 2
    assert [i["Metadata"]["Seed"] for i in data["Images"]] == [10, 11]
    assert [decode_png(i["ImageBase64"]).size for i in data["Images"]] == [(64, 64)] * 2
    # the variation pipeline takes no phrase: the seed's body still works, and says what it ignored
    assert data["IgnoredFields"] == (["Phrase", "Unknown"] if route.endswith("variation") else ["Unknown"])
    assert data["ElapsedSeconds"] > 0


def test_images_embed_the_request_that_made_them(server):
    reply = server.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Seed=5, Total=2))
    second = reply.json["Images"][1]
    embedded = json.loads(decode_png(second["ImageBase64"]).text["pico"])
    assert embedded["Pipeline"] == "stable-diffusion"
    assert embedded["Request"]["Seed"] == 5 and embedded["Request"]["Total"] == 2
    assert embedded["Metadata"] == second["Metadata"]


def test_images_carry_an_automatic1111_parameters_text(server):
    reply = server.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Seed=5, NegativePhrase="dog"))
    image = decode_png(reply.json["Images"][0]["ImageBase64"])
    assert image.text["parameters"] == ("ginger cat\nNegative prompt: dog\nSteps: 2, Sampler: PNDM, CFG scale: 7.5, "
                                        "Seed: 5, Size: 64x64, Model: runwayml/stable-diffusion-v1-5")


def test_output_format_jpeg(server):
    reply = server.post("/api/v1/stable-diffusion", body_for("stable-diffusion", OutputFormat="jpeg"))
    data = base64.b64decode(reply.json["Images"][0]["ImageBase64"])
    assert data[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("raw, message", [
    (b"not json", "The request body is not valid JSON: Expecting value at line 1 column 1"),
    (b"[1, 2]", "The request body must be a JSON object, got an array"),
    (b"", "The request body is empty; send a JSON object, e.g. {\"Phrase\": \"ginger cat\"}"),
    (b'{"Phrase": "x", "Total": NaN}', "The JSON body contains NaN, which is not valid JSON"),
    (b"\xff\xfe{}", "The request body is not UTF-8 text"),
    (b"[" * 100000, "The JSON body is nested too deeply"),
])
def test_400_for_bodies_that_are_not_a_json_object(server, raw, message):
    reply = server.request("POST", "/api/v1/stable-diffusion", raw=raw, headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.json == {"Error": {"Code": "BAD_REQUEST", "Message": message}}


@pytest.mark.parametrize("body, field, message", [
    ({}, "Phrase", "Phrase is required"),
    ({"Phrase": 3}, "Phrase", "Phrase must be a string, got 3"),
    ({"Phrase": "x", "Total": 9}, "Total", "Total must be between 1 and 5, got 9"),
    ({"Phrase": "x", "Seed": "abc"}, "Seed", "Seed must be an integer between -1 and 4294967295, got the string 'abc'"),
    ({"Phrase": "x", "Total": None}, "Total", "Total must not be null; leave it out to get the default"),
])
def test_422_names_the_field(server, body, field, message):
    reply = server.post("/api/v1/stable-diffusion", body)
    assert reply.status == 422
    assert reply.json == {"Error": {"Code": "INVALID_REQUEST", "Message": message, "Field": field}}


def test_422_when_strength_leaves_no_denoising_step(server):
    body = {"Phrase": "x", "ImageBase64": b64(png_bytes()), "Steps": 1}
    reply = server.post("/api/v1/stable-diffusion-image-to-image", body)
    assert reply.status == 422
    assert reply.json == {"Error": {
        "Code": "INVALID_REQUEST", "Field": "Strength",
        "Message": "Strength 0.8 with 1 step leaves no denoising step to run (int(1 x 0.8) = 0)",
        "Hint": "Raise Steps to at least 2, or Strength to at least 1."}}
    assert server.post("/api/v1/stable-diffusion-image-to-image", {**body, "Steps": 2}).status == 200


def test_422_for_an_image_that_is_not_one(server):
    reply = server.post("/api/v1/stable-diffusion-image-to-image", {"Phrase": "x", "ImageBase64": b64(b"text")})
    assert reply.status == 422
    assert reply.json["Error"]["Field"] == "ImageBase64"


def test_404_for_unknown_routes(server):
    reply = server.get("/api/v1/stable-diffusion-4")
    assert reply.status == 404
    assert reply.json == {"Error": {"Code": "NOT_FOUND",
                                    "Message": "No route GET /api/v1/stable-diffusion-4; see GET /openapi.json "
                                               "for the routes"}}


def test_403_for_a_model_outside_the_allow_list(server):
    reply = server.post("/api/v1/stable-diffusion", {"Phrase": "x", "Model": "someone/else"})
    assert reply.status == 403
    assert reply.json["Error"]["Code"] == "MODEL_NOT_ALLOWED"
    assert reply.json["Error"]["Message"] == "Model someone/else is not allowed on this server"


def test_405_for_a_wrong_method(server):
    reply = server.get("/api/v1/stable-diffusion")
    assert reply.status == 405
    assert reply.json == {"Error": {"Code": "METHOD_NOT_ALLOWED",
                                    "Message": "/api/v1/stable-diffusion does not accept GET; it accepts POST"}}
    assert server.post("/api/v1/health", {}).status == 405


def test_one_slot_busy_answers_503_and_health_stays_fast(server):
    with server.held():
        first = Background(server.post, "/api/v1/stable-diffusion", body_for("stable-diffusion"))
        slowest = server.wait_for_health("Busy")
        server.wait_for_jobs("running")
        second = server.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
        status = server.get("/api/v1/status").json
    assert second.status == 503
    assert second.json["Error"]["Code"] == "GPU_BUSY"
    assert second.header("Retry-After") == "2"
    assert first.result().status == 200
    assert slowest < 0.5
    assert (status["Status"], status["SlotsInUse"], status["Slots"], status["QueueLength"]) == ("Busy", 1, 1, 0)
    assert status["Jobs"][0]["State"] == "running"
    assert server.get("/api/v1/health").json == {"Status": "Idle"}


def test_status_reports_slots_models_and_device(server):
    server.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
    status = server.get("/api/v1/status").json
    assert status["Device"] == "cpu"
    assert (status["SlotsInUse"], status["Slots"], status["QueueLength"], status["QueueLimit"]) == (0, 1, 0, 0)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)" in status["LoadedModels"]


def test_cors_allows_any_origin_by_default(server):
    reply = server.request("OPTIONS", "/api/v1/stable-diffusion", headers={
        "Origin": "http://page.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert reply.status == 204
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert "POST" in reply.header("Access-Control-Allow-Methods")
    assert "Content-Type" in reply.header("Access-Control-Allow-Headers")
    reply = server.post("/api/v1/stable-diffusion", {"Total": 9}, headers={"Origin": "http://page.example"})
    assert reply.header("Access-Control-Allow-Origin") == "*"


def test_one_log_line_per_request(server):
    server.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Seed=77))
    server.post("/api/v1/stable-diffusion", {"Total": 9})

    def logged(status: int, ending: str) -> bool:
        return any(f"POST /api/v1/stable-diffusion {status} " in line and line.endswith(ending)
                   for line in server.log_text().splitlines())

    wait_until(lambda: logged(200, "images=1 seed=77"), 10, "the 200 line")
    wait_until(lambda: logged(422, "error=INVALID_REQUEST"), 10, "the 422 line")
