"""Answers are encoded outside the generation slot, their images at once: the next generation never waits.

The server runs in this process (the real app on Cheroot, on the tiny models) so that a test can
hold an answer's encoding at a gate and watch what the server does meanwhile.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading

import numpy as np
import pytest
from cheroot import wsgi
from PIL import Image

from pico.schemas import images
from pico.schemas.images import read_parameters

GATE_TIMEOUT = 120  # seconds; only reached when the behaviour under test is broken


class InProcessServer:
    """create_app on Cheroot in a thread of this process: one slot, no queue (the defaults)."""

    def __init__(self, models_dir):
        from pico.config import Settings
        from pico.server.app import create_app

        self.app = create_app(Settings(models_dir=models_dir, device="cpu"))
        self.server = wsgi.Server(("127.0.0.1", 0), self.app, numthreads=6, server_name="pico-test")
        self.server.prepare()
        self.port = self.server.bind_addr[1]
        self.thread = threading.Thread(target=self.server.serve, name="pico-test-server", daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(30)
        self.app.config["pico.service"].engine.close()


@pytest.fixture(scope="module")
def live(tiny_models):
    server = InProcessServer(tiny_models)
    yield server
    server.stop()


def generate(live: InProcessServer, **fields) -> tuple[int, dict]:
    return live.request("POST", "/api/v1/stable-diffusion", {"Phrase": "ginger cat", "Steps": 2, **fields})


def decoded(answer: dict, index: int) -> tuple[np.ndarray, dict]:
    data = base64.b64decode(answer["Images"][index]["ImageBase64"])
    return np.asarray(Image.open(io.BytesIO(data))), read_parameters(data)["pico"]


def test_the_next_generation_runs_while_the_previous_answer_is_encoded(live, monkeypatch):
    encoding, release = threading.Event(), threading.Event()
    gated, lock = [], threading.Lock()
    real = images.encode_image

    def gate_the_first(image, fmt, parameters, level):
        with lock:
            first = not gated
            gated.append(parameters["Metadata"]["Seed"])
        if first:
            encoding.set()
            assert release.wait(GATE_TIMEOUT)
        return real(image, fmt, parameters, level)

    monkeypatch.setattr(images, "encode_image", gate_the_first)
    held = {}
    first = threading.Thread(target=lambda: held.update(reply=generate(live, Seed=1)))
    first.start()
    try:
        assert encoding.wait(GATE_TIMEOUT), "the first answer never reached its encoding"
        status, now = live.request("GET", "/api/v1/status")
        assert status == 200 and now["SlotsInUse"] == 0 and now["Status"] == "Idle"
        # One slot and no queue: were the slot still held, this would be turned away with 503.
        status, second = generate(live, Seed=2)
        assert status == 200, second
        assert second["Images"][0]["Metadata"]["Seed"] == 2
        assert "reply" not in held and first.is_alive()  # the first answer is still being encoded
    finally:
        release.set()
        first.join(GATE_TIMEOUT)
    status, answer = held["reply"]
    assert status == 200, answer
    pixels, embedded = decoded(answer, 0)
    assert pixels.shape == (64, 64, 3) and embedded["Metadata"]["Seed"] == 1
    assert gated == [1, 2]


def test_the_images_of_one_answer_are_encoded_at_once(live, monkeypatch):
    if images.ENCODE_THREADS < 2:
        pytest.skip("one CPU: the images encode on the route's thread")
    all_in = threading.Barrier(2, timeout=GATE_TIMEOUT)  # breaks unless both encodings are in flight together
    real = images.encode_image

    def meet(image, fmt, parameters, level):
        all_in.wait()
        return real(image, fmt, parameters, level)

    monkeypatch.setattr(images, "encode_image", meet)
    status, answer = generate(live, Seed=7, Total=2)
    assert status == 200, answer
    for index in range(2):
        _, embedded = decoded(answer, index)
        assert embedded["Metadata"] == answer["Images"][index]["Metadata"]
        assert embedded["Metadata"]["Seed"] == 7 + index
