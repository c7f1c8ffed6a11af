"""Progress and cancel over HTTP: every generation is a job with an id.

Generations are held open with the hold fault (``server.held()``), so each test decides when
they go on: nothing depends on how fast this machine runs a step.
"""

from __future__ import annotations

import socket

from tests.live import Background, wait_until
from tests.server.test_api import body_for

GEN = "/api/v1/stable-diffusion"


def test_a_job_reports_its_progress_and_ends_done(server):
    with server.held() as hold:
        pending = Background(server.post, GEN, body_for("stable-diffusion", Steps=5, Scheduler="Euler"))
        [job] = server.wait_for_jobs("running")
        seen = server.get(f"/api/v1/jobs/{job['Id']}").json
        hold.release()
        reply = pending.result()
    assert (seen["State"], seen["Step"], seen["Steps"], seen["Pipeline"]) == ("running", 1, 5, "stable-diffusion")
    assert reply.header("X-Pico-Job") == job["Id"]
    done = server.get(f"/api/v1/jobs/{job['Id']}").json
    assert (done["State"], done["Images"], done["Step"], done["Steps"]) == ("done", 1, 5, 5)
    assert done["Seeds"] == [reply.json["Images"][0]["Metadata"]["Seed"]]
    assert done["StepsPerSecond"] > 0 and done["BatchSize"] == 1


def test_delete_stops_a_running_job_and_frees_the_slot(server):
    with server.held():
        pending = Background(server.post, GEN, body_for("stable-diffusion", Steps=50))
        [job] = server.wait_for_jobs("running")
        cancelled = server.request("DELETE", f"/api/v1/jobs/{job['Id']}")
    assert cancelled.status == 200
    reply = pending.result()
    assert reply.status == 409
    assert reply.json["Error"]["Code"] == "CANCELLED"
    ended = server.get(f"/api/v1/jobs/{job['Id']}").json
    assert (ended["State"], ended["Step"]) == ("cancelled", 2)  # released at step 1, stopped at the next
    assert server.get("/api/v1/health").json == {"Status": "Idle"}


def test_unknown_job_is_404(server):
    reply = server.get("/api/v1/jobs/nope")
    assert reply.status == 404 and reply.json["Error"]["Code"] == "NOT_FOUND"


def test_delete_removes_a_queued_job(operations):
    with operations.held() as hold:
        first = Background(operations.post, GEN, body_for("stable-diffusion"))
        operations.wait_for_jobs("running")
        second = Background(operations.post, GEN, body_for("stable-diffusion"))
        [waiting] = operations.wait_for_jobs("queued")
        assert operations.get("/api/v1/status").json["QueueLength"] == 1
        assert operations.request("DELETE", f"/api/v1/jobs/{waiting['Id']}").json["State"] == "cancelled"
        assert second.result().status == 409  # at once: the first still holds the slot
        assert operations.get("/api/v1/status").json["QueueLength"] == 0
        hold.release()
        assert first.result().status == 200
    assert operations.get(f"/api/v1/jobs/{waiting['Id']}").json["State"] == "cancelled"


def send_raw(server, body: bytes) -> socket.socket:
    """A generation request on a socket the test can close before the answer comes."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /api/v1/stable-diffusion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def test_a_client_that_leaves_the_queue_loses_its_place(operations):
    with operations.held() as hold:
        first = Background(operations.post, GEN, body_for("stable-diffusion"))
        operations.wait_for_jobs("running")
        sock = send_raw(operations, b'{"Phrase": "cat", "Steps": 2}')
        [waiting] = operations.wait_for_jobs("queued")
        assert operations.get("/api/v1/status").json["QueueLength"] == 1
        sock.close()
        wait_until(lambda: operations.get("/api/v1/status").json["QueueLength"] == 0, 30, "the queue to empty")
        assert not first.done  # it left while the first still held the slot
        left = operations.get(f"/api/v1/jobs/{waiting['Id']}").json
        hold.release()
        assert first.result().status == 200
    assert left["State"] == "cancelled" and left["Step"] == 0


def test_a_client_that_hangs_up_mid_generation_frees_the_slot(server):
    with server.held() as hold:
        sock = send_raw(server, b'{"Phrase": "cat", "Steps": 50}')
        [job] = server.wait_for_jobs("running")
        sock.close()
        hold.release()
        server.wait_for_health("Idle", timeout=30)
    ended = server.get(f"/api/v1/jobs/{job['Id']}").json
    assert (ended["State"], ended["Step"]) == ("cancelled", 2)
