"""OpenAI image streaming through the real `openai` SDK and as raw SSE bodies, against a real `pico serve`."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import requests
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image

from tests.conftest import png_bytes
from tests.server.sse import EventStream


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)


def pixels(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    image.load()
    return image


def test_generate_with_stream_yields_partial_images_then_the_completed_one(client):
    events = list(client.images.generate(model="sd15", prompt="ginger cat", stream=True, partial_images=2,
                                         extra_body={"steps": 6, "seed": 7}))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent, ImageGenPartialImageEvent, ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert {e.size for e in events} == {"64x64"} and {e.output_format for e in events} == {"png"}
    partials = [pixels(e.b64_json) for e in events[:2]]
    assert all(p.size == (64, 64) for p in partials)
    assert partials[0].tobytes() != partials[1].tobytes()  # the image forming: steps 2 and 4 of 6
    final = pixels(events[-1].b64_json)
    plain = client.images.generate(model="sd15", prompt="ginger cat", extra_body={"steps": 6, "seed": 7})
    assert final.tobytes() == pixels(plain.data[0].b64_json).tobytes()


def test_partial_images_zero_sends_only_the_completed_image_and_n_sends_one_each(client):
    events = list(client.images.generate(prompt="ginger cat", n=2, stream=True, partial_images=0,
                                         extra_body={"steps": 3, "seed": 9}))
    assert [e.type for e in events] == ["image_generation.completed"] * 2
    first, second = (pixels(e.b64_json) for e in events)
    assert first.tobytes() != second.tobytes()  # seeds 9 and 10


def test_edit_with_stream_yields_image_edit_events(client):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 0, 64, 64))  # transparent: repaint
    out = io.BytesIO()
    mask.save(out, format="PNG")
    events = list(client.images.edit(image=("cat.png", png_bytes()), mask=("mask.png", out.getvalue()),
                                     prompt="a hat", stream=True, partial_images=1,
                                     extra_body={"steps": 4, "seed": 3}))
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]
    assert events[0].partial_image_index == 0 and pixels(events[1].b64_json).size == (64, 64)


def test_the_raw_events_have_exactly_the_fields_the_sdk_declares(server):
    body = {"prompt": "ginger cat", "stream": True, "partial_images": 1, "steps": 4, "seed": 1, "quality": "high"}
    reply = EventStream(server.port, "POST", "/v1/images/generations", body)
    assert reply.status == 200 and reply.is_stream
    events = reply.all()
    assert [e.name for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    partial, completed = (e.data for e in events)
    assert set(partial) == set(ImageGenPartialImageEvent.model_fields)
    assert set(completed) == set(ImageGenCompletedEvent.model_fields) - {"safety_identifier"}
    assert partial["type"] == "image_generation.partial_image" and completed["type"] == "image_generation.completed"
    assert partial["quality"] == completed["quality"] == "high" and partial["background"] == "opaque"
    assert completed["usage"]["total_tokens"] == 0
    ImageGenPartialImageEvent.model_validate(partial)  # strict parsing accepts them too
    ImageGenCompletedEvent.model_validate(completed)


def test_stream_false_answers_as_before_and_bad_stream_values_are_400s_naming_the_parameter(server, client):
    plain = server.post("/v1/images/generations", {"prompt": "x", "stream": False, "steps": 2})
    assert plain.status == 200 and "data" in plain.json
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(prompt="x", stream=True, partial_images=4)
    assert raised.value.body["param"] == "partial_images"
    bad = server.post("/v1/images/generations", {"prompt": "x", "stream": "maybe"})
    assert bad.status == 400 and bad.json["error"]["param"] == "stream"


def test_a_failure_after_the_stream_began_is_an_error_event_the_sdk_raises(server, client):
    # The edit is admitted and streams; the job then finds the model cannot inpaint.
    form = {"prompt": "a hat", "model": "sd-variation", "stream": "true", "partial_images": "2", "steps": "4"}
    files = {"image": ("cat.png", png_bytes(), "image/png"), "mask": ("mask.png", png_bytes(mode="RGBA"), "image/png")}
    response = requests.post(f"http://127.0.0.1:{server.port}/v1/images/edits", data=form, files=files, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith("event: error\ndata: ")
    (block,) = [b for b in response.text.split("\n\n") if b]
    error = json.loads(block.split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == "model" and "image-variation model" in error["error"]["message"]
    with pytest.raises(openai.APIError, match="image-variation model"):
        list(client.images.edit(image=("cat.png", png_bytes()), mask=("mask.png", png_bytes(mode="RGBA")),
                                prompt="a hat", model="sd-variation", stream=True, extra_body={"steps": 4}))
