"""``pico serve --ray``: what a local server runs, the replicas run too: checkpoint files by name, requests that
load no model, previews of the images as they form, and a job's events followed from another front door."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.live import Background, tiny_server, wait_until
from tests.server.sse import EventStream

pytestmark = pytest.mark.ray

BODY = {"Phrase": "ginger cat", "Steps": 4, "Width": 64, "Height": 64, "Seed": 7}


@pytest.fixture(scope="module")
def door(ray_cluster, tiny_models, tmp_path_factory):
    """One front door deploying one replica on the module's cluster (its generations can be held)."""
    folder = tmp_path_factory.mktemp("door")
    server = tiny_server(tiny_models, "--ray", ray_cluster.address, "--replicas", "1", log=folder / "door.log",
                         hold=folder / "hold")
    yield server
    assert server.stop() == 0, server.log_text()


@pytest.fixture(scope="module")
def other_door(door, ray_cluster, tiny_models, tmp_path_factory):
    """A second front door on the same replica."""
    server = tiny_server(tiny_models, "--ray", ray_cluster.address, log=tmp_path_factory.mktemp("other") / "b.log")
    yield server
    assert server.stop() == 0, server.log_text()


def pixels(image_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("RGB"))


def test_a_checkpoint_file_runs_on_a_replica_as_its_folder_does(door):
    by_file = door.post("/api/v1/stable-diffusion", {**BODY, "Model": "tiny-sd15"})
    assert by_file.status == 200, by_file.body
    by_folder = door.post("/api/v1/stable-diffusion", BODY)
    assert by_folder.status == 200, by_folder.body
    np.testing.assert_array_equal(pixels(by_file.json["Images"][0]["ImageBase64"]),
                                  pixels(by_folder.json["Images"][0]["ImageBase64"]))
    assert by_file.json["Images"][0]["Metadata"]["Checkpoint"]["Name"] == "tiny-sd15.safetensors"


def test_lanczos_upscaling_needs_no_model_on_the_cluster(door):
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(image, format="PNG")
    reply = door.post("/api/v1/upscale", {"ImageBase64": base64.b64encode(image.getvalue()).decode(),
                                          "Upscaler": "Lanczos", "Scale": 2})
    assert reply.status == 200, reply.body
    assert Image.open(io.BytesIO(base64.b64decode(reply.json["Images"][0]["ImageBase64"]))).size == (64, 64)


def test_previews_cross_from_the_replica_to_the_event_stream(door):
    job = EventStream(door.port, "POST", "/api/v1/stable-diffusion?previews=1", BODY)
    assert job.status == 200, job.body
    events = job.all()
    previews = [event for event in events if event.name == "preview"]
    assert previews and previews[-1].data["Step"] == 4  # the replica sends one at the last step at least
    assert events[-1].name == "done"
    for event in previews:
        image = Image.open(io.BytesIO(base64.b64decode(event.data["Images"][0])))
        assert image.format == "JPEG" and image.size[0] > 0


def test_another_front_doors_job_is_followed_to_its_end(door, other_door):
    with door.held() as hold:
        running = Background(door.post, "/api/v1/stable-diffusion", BODY)
        job_id = wait_until(lambda: next((job["Id"] for job in door.get("/api/v1/status").json["Jobs"]
                                          if job["Step"] >= 1), None), what="the job's first step")
        follower = EventStream(other_door.port, "GET", f"/api/v1/jobs/{job_id}/events")
        assert follower.status == 200, follower.body
        events = iter(follower)
        seen = []
        for event in events:  # the board's copy may still say queued: it is published every so often
            seen.append(event.name)
            if event.name == "step":
                break
        assert seen[-1] == "step" and set(seen) <= {"queued", "started", "step"}, seen
        hold.release()
        rest = list(events)
    assert running.result().status == 200
    assert rest[-1].name == "done" and rest[-1].data["Job"]["State"] == "done", rest[-1]
