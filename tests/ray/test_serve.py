"""``pico serve --ray``: two front doors on one real cluster of two CPU replicas, over HTTP.

Front door A deploys the engines (``--replicas 2``, one slot each, ``--queue 0``); front door B
joins them. What one front door starts, the other sees, follows and cancels; what a local server runs
(checkpoint files, model-less upscaling, previews) the replicas run too. A has a hold file, and the
replicas it deploys take its settings, so ``a.held()`` holds their generations at their first step:
a long job is held, never timed by its step count.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.live import Background, LiveServer, tiny_server, wait_until
from tests.server.sse import EventStream

pytestmark = pytest.mark.ray

SD2 = "stabilityai/stable-diffusion-2-1"
SHORT = {"Phrase": "ginger cat", "Steps": 2, "Width": 64, "Height": 64, "Seed": 7}
HELD = {"Phrase": "ginger cat", "Steps": 20, "Width": 64, "Height": 64}  # inside a.held(): stays at step 1


@pytest.fixture(scope="module")
def doors(ray_cluster, tiny_models, tmp_path_factory):
    """Front door A deploys two replicas; front door B joins them. Both must stop with status 0."""
    logs = tmp_path_factory.mktemp("doors")
    first = tiny_server(tiny_models, "--ray", ray_cluster.address, "--replicas", "2", log=logs / "a.log",
                        hold=logs / "hold")  # its replicas hold their steps while the file exists
    try:
        second = tiny_server(tiny_models, "--ray", ray_cluster.address, log=logs / "b.log")
    except BaseException:
        first.stop()
        raise
    yield first, second
    assert second.stop() == 0, second.log_text()
    assert first.stop() == 0, first.log_text()


def board_replicas() -> list[dict]:
    """The replicas as the board knows them (loads per model included), read from the test's own driver."""
    from ray import serve

    return serve.get_deployment_handle("PicoBoard", app_name="pico").replicas.remote().result(timeout_s=10)


def pixels(image_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("RGB"))


def wait_for(read, check, timeout: float = 60, what: str = "a condition"):
    """Poll ``read()`` until ``check(value)``; returns the value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if check(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")


def jobs_seen_from(door: LiveServer) -> list[dict]:
    return door.get("/api/v1/status").json["Jobs"]


def wait_until_every_replica_is_idle(door: LiveServer) -> list[dict]:
    """The replicas, once none reports a slot in use (a cancelled generation ends at its next step)."""
    return wait_for(lambda: door.get("/api/v1/status").json["Replicas"],
                    lambda rs: len(rs) == 2 and not any(r["SlotsInUse"] for r in rs), what="idle replicas")


def test_every_api_generates_on_the_replicas_and_status_lists_them(doors):
    a, b = doors
    first = a.post("/api/v1/stable-diffusion", SHORT)
    assert first.status == 200, first.body
    assert first.header("X-Pico-Job")
    again = b.post("/api/v1/stable-diffusion", SHORT)
    assert again.status == 200
    assert np.array_equal(pixels(first.json["Images"][0]["ImageBase64"]),
                          pixels(again.json["Images"][0]["ImageBase64"]))
    assert first.json["Images"][0]["Metadata"]["Seed"] == 7

    openai = b.post("/v1/images/generations", {"prompt": "cat", "n": 2, "size": "64x64", "seed": 3, "steps": 2})
    assert openai.status == 200, openai.body
    assert [pixels(item["b64_json"]).shape for item in openai.json["data"]] == [(64, 64, 3)] * 2
    a1111 = a.post("/sdapi/v1/txt2img", {"prompt": "cat", "steps": 2, "width": 64, "height": 64, "seed": 5})
    assert a1111.status == 200, a1111.body
    assert pixels(a1111.json["images"][0]).shape == (64, 64, 3)

    status = b.get("/api/v1/status").json
    assert status["Status"] == "Idle"
    assert (status["Slots"], len(status["Replicas"])) == (2, 2)
    assert {(r["Device"], r["Slots"]) for r in status["Replicas"]} == {("cpu", 1)}
    assert len({r["Pid"] for r in status["Replicas"]}) == 2
    metrics = a.get("/metrics").body.decode()
    assert "pico_slots 2.0" in metrics.splitlines()
    assert 'pico_requests_total{method="POST",route="/api/v1/stable-diffusion",status="200"} 1.0' in metrics


def test_a_model_stays_on_the_replica_that_loaded_it_while_that_replica_is_free(doors):
    a, b = doors
    for door in (a, b, a, b):  # each front door routes on its own: both must find the replica that has it
        wait_until_every_replica_is_idle(b)
        reply = door.post("/api/v1/stable-diffusion-2", SHORT)
        assert reply.status == 200, reply.body
    loads = [r["loads"].get(SD2, 0) for r in board_replicas()]
    assert sorted(loads) == [0, 1]


def test_busy_replicas_refuse_more_and_any_front_door_follows_and_cancels_any_job(doors):
    a, b = doors
    wait_until_every_replica_is_idle(b)
    with ThreadPoolExecutor(3) as pool, a.held() as hold:
        running = [pool.submit(a.post, "/api/v1/stable-diffusion", HELD) for _ in range(2)]
        b.wait_for_health("Busy", timeout=60)
        queued = pool.submit(a.post, "/api/v1/stable-diffusion", HELD)
        jobs = wait_for(lambda: jobs_seen_from(b), lambda js: [j["State"] for j in js].count("queued") == 1,
                        what="the third job queued at A, seen from B")

        refused = a.post("/api/v1/stable-diffusion", SHORT)
        assert (refused.status, refused.json["Error"]["Code"]) == (503, "GPU_BUSY")
        assert refused.header("Retry-After") == "2"
        openai = a.post("/v1/images/generations", {"prompt": "cat", "size": "64x64"})
        assert (openai.status, openai.json["error"]["code"]) == (429, "gpu_busy")

        first = next(j["Id"] for j in jobs if j["State"] == "running")
        job = wait_for(lambda: b.get(f"/api/v1/jobs/{first}").json, lambda j: j["Step"] > 0,
                       what="steps of A's job, seen from B")
        assert (job["State"], job["Pipeline"], job["Step"]) == ("running", "stable-diffusion", 1)  # held there
        # the refused requests never became jobs (front doors publish a few times a second)
        progress = wait_for(lambda: b.get("/sdapi/v1/progress").json, lambda p: p["state"]["job_count"] == 3,
                            what="three jobs in A1111's progress at B")
        assert progress["state"]["sampling_step"] == 1

        waiting = next(j["Id"] for j in jobs if j["State"] == "queued")
        assert b.request("DELETE", f"/api/v1/jobs/{waiting}").status == 200
        reply = queued.result(timeout=60)
        assert (reply.status, reply.json["Error"]["Code"]) == (409, "CANCELLED")
        for job in jobs:
            if job["State"] == "running":
                assert b.request("DELETE", f"/api/v1/jobs/{job['Id']}").status == 200
        for future in running:  # answered while the replicas still hold the generations: A gave up on them
            reply = future.result(timeout=60)
            assert (reply.status, reply.json["Error"]["Code"]) == (409, "CANCELLED")
        hold.release()  # the replicas' generations stop at their next step
    ended = wait_for(lambda: b.get(f"/api/v1/jobs/{first}").json, lambda j: j["State"] != "running",
                     what="A's job's end, published")  # front doors publish a few times a second
    assert (ended["State"], ended["Step"], ended["Steps"]) == ("cancelled", 1, HELD["Steps"])


def test_a_checkpoint_file_runs_on_a_replica_as_its_folder_does(doors):
    a, _ = doors
    by_file = a.post("/api/v1/stable-diffusion", {**SHORT, "Model": "tiny-sd15"})
    assert by_file.status == 200, by_file.body
    by_folder = a.post("/api/v1/stable-diffusion", SHORT)
    assert by_folder.status == 200, by_folder.body
    np.testing.assert_array_equal(pixels(by_file.json["Images"][0]["ImageBase64"]),
                                  pixels(by_folder.json["Images"][0]["ImageBase64"]))
    assert by_file.json["Images"][0]["Metadata"]["Checkpoint"]["Name"] == "tiny-sd15.safetensors"


def test_lanczos_upscaling_needs_no_model_on_the_cluster(doors):
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(image, format="PNG")
    reply = doors[1].post("/api/v1/upscale", {"ImageBase64": base64.b64encode(image.getvalue()).decode(),
                                              "Upscaler": "Lanczos", "Scale": 2})
    assert reply.status == 200, reply.body
    assert Image.open(io.BytesIO(base64.b64decode(reply.json["Images"][0]["ImageBase64"]))).size == (64, 64)


def test_previews_cross_from_the_replica_to_the_event_stream(doors):
    job = EventStream(doors[0].port, "POST", "/api/v1/stable-diffusion?previews=1", {**SHORT, "Steps": 4})
    assert job.status == 200, job.body
    events = job.all()
    previews = [event for event in events if event.name == "preview"]
    assert previews and previews[-1].data["Step"] == 4  # the replica sends one at the last step at least
    assert events[-1].name == "done"
    for event in previews:
        image = Image.open(io.BytesIO(base64.b64decode(event.data["Images"][0])))
        assert image.format == "JPEG" and image.size[0] > 0


def test_another_front_doors_job_is_followed_to_its_end(doors):
    a, b = doors
    with a.held() as hold:
        running = Background(a.post, "/api/v1/stable-diffusion", {**SHORT, "Steps": 4})
        job_id = wait_until(lambda: next((job["Id"] for job in a.get("/api/v1/status").json["Jobs"]
                                          if job["Step"] >= 1), None), what="the job's first step")
        wait_until(lambda: b.get(f"/api/v1/jobs/{job_id}").status == 200, what="the job on the board")
        follower = EventStream(b.port, "GET", f"/api/v1/jobs/{job_id}/events")
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


def test_a_killed_replica_fails_its_request_at_once_and_serve_replaces_it(doors):
    a, b = doors
    before = {r["Pid"] for r in wait_until_every_replica_is_idle(b)}
    with ThreadPoolExecutor(1) as pool, a.held() as hold:
        doomed = pool.submit(a.post, "/api/v1/stable-diffusion", HELD)  # held: it cannot end before the kill
        busy = wait_for(lambda: b.get("/api/v1/status").json["Replicas"],
                        lambda rs: any(r["SlotsInUse"] for r in rs), what="a busy replica")
        pid = next(r["Pid"] for r in busy if r["SlotsInUse"])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        reply = doomed.result(timeout=60)
        assert time.monotonic() - killed < 10
        hold.release()  # Serve's new replica takes A's settings too: it must not hold what follows
    assert (reply.status, reply.json["Error"]["Code"]) == (503, "REPLICA_FAILED")
    assert reply.header("Retry-After") == "1"
    for door in (a, b, a):
        assert door.post("/api/v1/stable-diffusion", SHORT).status == 200
    replicas = wait_for(lambda: b.get("/api/v1/status").json["Replicas"],
                        lambda rs: len(rs) == 2 and pid not in {r["Pid"] for r in rs}, timeout=120,
                        what="Serve's new replica")
    assert len({r["Pid"] for r in replicas} - before) == 1
