"""Progress and cancel over HTTP: every generation is a job with an id."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.server.live import LiveServer
from tests.server.test_api import body_for


def start(server, body):
    """Send a generation in a thread; returns (thread, holder of its reply)."""
    holder = {}
    thread = threading.Thread(target=lambda: holder.update(reply=server.post("/api/v1/stable-diffusion", body)))
    thread.start()
    return thread, holder


def running_job(server, timeout=30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = server.get("/api/v1/status").json["Jobs"]
        running = [j for j in jobs if j["State"] == "running" and j["Step"] >= 1]
        if running:
            return running[0]
        time.sleep(0.05)
    raise AssertionError("no job started running")


def test_a_job_reports_its_progress_and_ends_done(server):
    thread, holder = start(server, body_for("stable-diffusion", Steps=100))
    job = running_job(server)
    seen = server.get(f"/api/v1/jobs/{job['Id']}").json
    assert seen["State"] == "running" and 1 <= seen["Step"] <= seen["Steps"] and seen["Pipeline"] == "stable-diffusion"
    thread.join()
    assert holder["reply"].header("X-Pico-Job") == job["Id"]
    done = server.get(f"/api/v1/jobs/{job['Id']}").json
    assert (done["State"], done["Images"], done["Step"]) == ("done", 1, done["Steps"])
    assert done["Seeds"] == [holder["reply"].json["Images"][0]["Metadata"]["Seed"]]
    assert done["StepsPerSecond"] > 0 and done["BatchSize"] == 1


def test_delete_stops_a_running_job_and_frees_the_slot(server):
    thread, holder = start(server, body_for("stable-diffusion", Steps=200))
    job = running_job(server)
    cancelled = server.request("DELETE", f"/api/v1/jobs/{job['Id']}")
    assert cancelled.status == 200
    thread.join(30)
    assert holder["reply"].status == 409
    assert holder["reply"].json["Error"]["Code"] == "CANCELLED"
    assert server.get(f"/api/v1/jobs/{job['Id']}").json["State"] == "cancelled"
    assert server.get("/api/v1/health").json == {"Status": "Idle"}


def test_unknown_job_is_404(server):
    reply = server.get("/api/v1/jobs/nope")
    assert reply.status == 404 and reply.json["Error"]["Code"] == "NOT_FOUND"


@pytest.fixture(scope="module")
def queued(tiny_models, tmp_path_factory):
    live = LiveServer(tiny_models, "--queue", "2", log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


def test_delete_removes_a_queued_job(queued):
    first, first_reply = start(queued, body_for("stable-diffusion", Steps=150))
    running_job(queued)
    second, second_reply = start(queued, body_for("stable-diffusion"))
    deadline = time.monotonic() + 10
    while queued.get("/api/v1/status").json["QueueLength"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = [j for j in queued.get("/api/v1/status").json["Jobs"] if j["State"] == "queued"][0]
    assert queued.request("DELETE", f"/api/v1/jobs/{waiting['Id']}").json["State"] == "cancelled"
    second.join(10)
    assert second_reply["reply"].status == 409
    assert queued.get("/api/v1/status").json["QueueLength"] == 0
    first.join()
    assert first_reply["reply"].status == 200


def test_a_client_that_leaves_the_queue_loses_its_place(queued):
    first, first_reply = start(queued, body_for("stable-diffusion", Steps=150))
    running_job(queued)
    body = b'{"Phrase": "cat", "Steps": 2}'
    sock = socket.create_connection(("127.0.0.1", queued.port))
    sock.sendall(b"POST /api/v1/stable-diffusion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    deadline = time.monotonic() + 10
    while queued.get("/api/v1/status").json["QueueLength"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    sock.close()
    deadline = time.monotonic() + 10
    while queued.get("/api/v1/status").json["QueueLength"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued.get("/api/v1/status").json["QueueLength"] == 0
    assert first.is_alive()  # it left while the first was still running
    first.join()
    states = [j["State"] for j in queued.get("/api/v1/status").json["Jobs"]]
    assert states == []


def test_a_client_that_hangs_up_mid_generation_frees_the_slot(server):
    body = b'{"Phrase": "cat", "Steps": 250}'
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /api/v1/stable-diffusion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    job = running_job(server)
    sock.close()
    server.wait_for_health("Idle", timeout=10)
    assert server.get(f"/api/v1/jobs/{job['Id']}").json["State"] == "cancelled"
