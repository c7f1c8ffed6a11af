"""Server operation over real HTTP: the queue, failures and recovery, body limits, CORS, SIGTERM."""

from __future__ import annotations

import threading
import time

import pytest

from tests.server.live import LiveServer
from tests.server.test_api import body_for


@pytest.fixture(scope="module")
def queued(tiny_models, tmp_path_factory):
    """One slot, a queue of one, CORS narrowed to one origin."""
    live = LiveServer(tiny_models, "--queue", "1", "--cors-origin", "http://allowed.example",
                      log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def faulty(tiny_models, tmp_path_factory):
    """Injected faults (one pipeline failure, one out-of-memory), a 1 MB body limit."""
    live = LiveServer(tiny_models, "--max-body-mb", "1", "--allow-model", "nobody/*",
                      env={"PICO_FAULTS": "error:1,oom:1,load:stabilityai/stable-diffusion-2-1"},
                      log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


def post_concurrently(server, bodies: list[dict]) -> list:
    """Send the first body, wait until it holds the slot, then send the rest at once."""
    replies = [None] * len(bodies)

    def send(index: int) -> None:
        replies[index] = server.post("/api/v1/stable-diffusion", bodies[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    threads[0].start()
    server.wait_for_health("Busy")
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def test_queue_lets_the_second_request_wait_its_turn(queued):
    first, second = post_concurrently(queued, [body_for("stable-diffusion", Steps=100, Seed=1),
                                               body_for("stable-diffusion", Seed=2)])
    assert (first.status, second.status) == (200, 200)
    assert second.json["Images"][0]["Metadata"]["Seed"] == 2


def test_beyond_the_queue_is_503(queued):
    replies = post_concurrently(queued, [body_for("stable-diffusion", Steps=100)] + [body_for("stable-diffusion")] * 3)
    assert sorted(reply.status for reply in replies) == [200, 200, 503, 503]  # one running, one queued
    assert all(r.json["Error"]["Code"] == "GPU_BUSY" for r in replies if r.status == 503)


def test_cors_origin_narrows_browser_access(queued):
    allowed = queued.get("/api/v1/health", headers={"Origin": "http://allowed.example"})
    assert allowed.header("Access-Control-Allow-Origin") == "http://allowed.example"
    other = queued.get("/api/v1/health", headers={"Origin": "http://evil.example"})
    assert other.header("Access-Control-Allow-Origin") is None


def test_a_failure_inside_the_pipeline_then_success(faulty):
    oom = faulty.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
    assert oom.status == 503 and oom.json["Error"]["Code"] == "OUT_OF_MEMORY"
    assert "AttentionSlicing" in oom.json["Error"]["Hint"]
    failed = faulty.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
    assert failed.status == 500
    assert failed.json == {"Error": {"Code": "INTERNAL_SERVER_ERROR",
                                     "Message": "The server failed to process the request; the details are in "
                                                "its log."}}
    assert "injected fault" not in failed.body.decode()
    assert faulty.get("/api/v1/health").json == {"Status": "Idle"}
    assert faulty.post("/api/v1/stable-diffusion", body_for("stable-diffusion")).status == 200
    assert "injected fault: the pipeline failed" in faulty.log_text()


def test_413_for_a_body_over_the_limit(faulty):
    reply = faulty.post("/api/v1/stable-diffusion", {"Phrase": "x" * (1024 * 1024 + 10)})
    assert reply.status == 413
    assert reply.json["Error"]["Code"] == "PAYLOAD_TOO_LARGE"
    assert reply.json["Error"]["Message"].endswith("bytes; the limit is 1 MB (--max-body-mb)")


def test_404_for_a_model_that_is_allowed_but_missing(faulty):
    reply = faulty.post("/api/v1/stable-diffusion", {"Phrase": "x", "Model": "nobody/nothing"})
    assert reply.status == 404
    assert reply.json["Error"]["Code"] == "MODEL_UNAVAILABLE"
    assert reply.json["Error"]["Field"] == "Model"
    assert "nobody/nothing" in reply.json["Error"]["Message"]


def test_sigterm_lets_the_running_generation_finish(tiny_models, tmp_path):
    live = LiveServer(tiny_models, log=tmp_path / "serve.log")
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        reply=live.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Steps=100))))
    worker.start()
    live.wait_for_health("Busy")
    started = time.monotonic()
    live.process.terminate()
    worker.join()
    code = live.process.wait(30)
    assert result["reply"].status == 200
    assert len(result["reply"].json["Images"]) == 1
    assert code == 0
    assert time.monotonic() - started < 30
    assert "stopped" in live.log_text()
    live.stop()


def test_a_model_that_fails_to_load_is_502_and_others_still_work(faulty):
    reply = faulty.post("/api/v1/stable-diffusion-2", body_for("stable-diffusion-2"))
    assert reply.status == 502
    assert reply.json["Error"]["Code"] == "MODEL_UNAVAILABLE"
    assert reply.json["Error"]["Message"].startswith("Model stabilityai/stable-diffusion-2-1 could not be loaded")
    assert faulty.post("/api/v1/stable-diffusion", body_for("stable-diffusion")).status == 200


def test_a_second_sigterm_exits_at_once(tiny_models, tmp_path):
    live = LiveServer(tiny_models, log=tmp_path / "serve.log")
    outcome = {}

    def generate() -> None:
        try:
            outcome["reply"] = live.post("/api/v1/stable-diffusion", body_for("stable-diffusion", Steps=250))
        except OSError as exc:  # the server is gone before it could answer: expected here
            outcome["error"] = exc

    worker = threading.Thread(target=generate)
    worker.start()
    live.wait_for_health("Busy")
    live.process.terminate()
    time.sleep(0.5)
    started = time.monotonic()
    live.process.terminate()
    code = live.process.wait(10)
    assert time.monotonic() - started < 5
    assert code == 128 + 15
    worker.join()
    assert "error" in outcome  # the generation was cut off, not finished
    assert "second SIGTERM: exiting now" in live.log_text()
