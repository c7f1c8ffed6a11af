"""Server operation over real HTTP: slots and the queue, failures and recovery, body limits, CORS,
PNG compression, demo mode, preloading, SIGTERM and Ctrl-C.

Generations are held open with the hold fault (``server.held()``) so each test decides when they
go on; the order of events never depends on how fast this machine runs a step.
"""

from __future__ import annotations

import signal
import socket
import struct
import zlib

import pytest

from tests.conftest import b64, png_bytes
from tests.live import Background, wait_until
from tests.server.conftest import ALLOWED_ORIGINS
from tests.server.test_api import body_for

GEN = "/api/v1/stable-diffusion"
SHUTTING_DOWN = "The server is shutting down; retry on another instance."


@pytest.fixture(scope="module")
def faulty(serve):
    """Injected faults (one pipeline failure, one out-of-memory, a model that fails to load), a 1 MB body limit."""
    return serve("--max-body-mb", "1", "--allow-model", "nobody/*",
                 env={"PICO_FAULTS": "error:1,oom:1,load:stabilityai/stable-diffusion-2-1"})


@pytest.fixture(scope="module")
def two_slots(serve, demo_cache):
    """Two slots and a queue of one, on the demo models, with SD 1.5 loaded and warmed up before serving."""
    return serve("--threadsmax", "2", "--queue", "1", "--demo", "--preload", "sd15",
                 env={"PICO_CACHE_DIR": str(demo_cache)}, models=False)


def test_queue_lets_the_second_request_wait_its_turn(operations):
    with operations.held() as hold:
        first = Background(operations.post, GEN, body_for("stable-diffusion", Seed=1))
        [running] = operations.wait_for_jobs("running")
        second = Background(operations.post, GEN, body_for("stable-diffusion", Seed=2))
        [waiting] = operations.wait_for_jobs("queued")  # it waits while the first holds the only slot
        assert operations.get("/api/v1/status").json["QueueLength"] == 1
        hold.release()
        replies = first.result(), second.result()
    assert [r.status for r in replies] == [200, 200]
    assert [r.header("X-Pico-Job") for r in replies] == [running["Id"], waiting["Id"]]
    assert replies[1].json["Images"][0]["Metadata"]["Seed"] == 2


def test_beyond_the_queue_is_503(operations):
    with operations.held() as hold:
        admitted = [Background(operations.post, GEN, body_for("stable-diffusion"))]
        operations.wait_for_jobs("running")
        admitted += [Background(operations.post, GEN, body_for("stable-diffusion")) for _ in range(2)]
        operations.wait_for_jobs("queued", 2)
        refused = [operations.post(GEN, body_for("stable-diffusion")) for _ in range(2)]
        hold.release()
        assert [pending.result().status for pending in admitted] == [200, 200, 200]  # one running, two queued
    assert [(r.status, r.json["Error"]["Code"], r.header("Retry-After")) for r in refused] == [
        (503, "GPU_BUSY", "2")] * 2


def test_two_slots_run_two_generations_at_once_and_a_third_waits(two_slots):
    with two_slots.held() as hold:
        pair = [Background(two_slots.post, GEN, body_for("stable-diffusion", Seed=seed)) for seed in (1, 2)]
        both = two_slots.wait_for_jobs("running", 2)  # both have taken a step and neither has ended
        assert two_slots.get("/api/v1/health").json == {"Status": "Busy"}
        third = Background(two_slots.post, GEN, body_for("stable-diffusion", Seed=3))
        [waiting] = two_slots.wait_for_jobs("queued")
        refused = two_slots.post(GEN, body_for("stable-diffusion"))
        status = two_slots.get("/api/v1/status").json
        hold.release()
        replies = [pending.result() for pending in (*pair, third)]
    assert (status["SlotsInUse"], status["Slots"], status["QueueLength"]) == (2, 2, 1)
    assert (refused.status, refused.json["Error"]["Code"]) == (503, "GPU_BUSY")
    assert [r.status for r in replies] == [200, 200, 200]
    assert {r.header("X-Pico-Job") for r in replies} == {both[0]["Id"], both[1]["Id"], waiting["Id"]}


def test_demo_mode_serves_the_demo_models_and_preload_warms_up_before_listening(two_slots):
    log = two_slots.log_text()
    assert "demo mode:" in log and "noise" in log
    warmed = log.index("warmed up runwayml/stable-diffusion-v1-5")
    assert warmed < log.index("listening on http://127.0.0.1:")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)" in two_slots.get("/api/v1/status").json[
        "LoadedModels"]


@pytest.mark.parametrize("origin", ALLOWED_ORIGINS)
def test_cors_origin_list_allows_each_listed_origin(operations, origin):
    reply = operations.get("/api/v1/health", headers={"Origin": origin})
    assert reply.header("Access-Control-Allow-Origin") == origin
    assert reply.header("Vary") == "Origin"
    preflight = operations.request("OPTIONS", GEN, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 204
    assert preflight.header("Access-Control-Allow-Origin") == origin
    assert "POST" in preflight.header("Access-Control-Allow-Methods")
    assert "Content-Type" in preflight.header("Access-Control-Allow-Headers")


def test_cors_origin_list_refuses_other_origins(operations):
    other = operations.get("/api/v1/health", headers={"Origin": "http://evil.example"})
    assert other.status == 200 and other.header("Access-Control-Allow-Origin") is None
    preflight = operations.request("OPTIONS", GEN, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.header("Access-Control-Allow-Origin") is None  # the browser then refuses the call
    assert preflight.header("Access-Control-Allow-Methods") is None


def png_compression(png: bytes) -> int:
    """The zlib FLEVEL of a PNG's pixel data: 0 for levels 0-1, 1 for 2-5, 2 for 6, 3 for 7-9."""
    position, data = 8, b""
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        if kind == b"IDAT":
            data += png[position + 8:position + 8 + length]
        position += 12 + length
    zlib.decompress(data)  # one whole zlib stream
    return data[1] >> 6


def test_png_compress_level_sets_the_compression_of_returned_images(operations, server):
    import base64

    def returned_png(live) -> bytes:
        reply = live.post(GEN, body_for("stable-diffusion", Seed=4))
        return base64.b64decode(reply.json["Images"][0]["ImageBase64"])

    default, level_9 = png_compression(returned_png(server)), png_compression(returned_png(operations))
    assert level_9 == 3  # PICO_PNG_COMPRESS_LEVEL=9: zlib's best compression
    assert default != level_9  # the default, level 1 (ISA-L's fast deflate)
    extras = operations.post("/sdapi/v1/extra-single-image", {"image": b64(png_bytes((32, 32))), "upscaler_1": "Lanczos",
                                                              "upscaling_resize": 2})
    assert extras.status == 200, extras.body
    assert png_compression(base64.b64decode(extras.json["image"])) == 3  # A1111's extras too


def test_no_key_on_a_public_address_warns_at_start(operations):
    assert "no API key set and listening on 0.0.0.0" in operations.log_text()


def test_a_failure_inside_the_pipeline_then_success(faulty):
    oom = faulty.post(GEN, body_for("stable-diffusion"))
    assert oom.status == 503 and oom.json["Error"]["Code"] == "OUT_OF_MEMORY"
    assert "AttentionSlicing" in oom.json["Error"]["Hint"]
    failed = faulty.post(GEN, body_for("stable-diffusion"))
    assert failed.status == 500
    assert failed.json == {"Error": {"Code": "INTERNAL_SERVER_ERROR",
                                     "Message": "The server failed to process the request; the details are in "
                                                "its log."}}
    assert "injected fault" not in failed.body.decode()
    assert faulty.get("/api/v1/health").json == {"Status": "Idle"}
    assert faulty.post(GEN, body_for("stable-diffusion")).status == 200
    assert "injected fault: the pipeline failed" in faulty.log_text()


def test_413_for_a_body_over_the_limit(faulty):
    reply = faulty.post(GEN, {"Phrase": "x" * (1024 * 1024 + 10)})
    assert reply.status == 413
    assert reply.json["Error"]["Code"] == "PAYLOAD_TOO_LARGE"
    assert reply.json["Error"]["Message"].endswith("bytes; the limit is 1 MB (--max-body-mb)")


def test_404_for_a_model_that_is_allowed_but_missing(faulty):
    reply = faulty.post(GEN, {"Phrase": "x", "Model": "nobody/nothing"})
    assert reply.status == 404
    assert reply.json["Error"]["Code"] == "MODEL_UNAVAILABLE"
    assert reply.json["Error"]["Field"] == "Model"
    assert "nobody/nothing" in reply.json["Error"]["Message"]


def test_a_model_that_fails_to_load_is_502_and_others_still_work(faulty):
    reply = faulty.post("/api/v1/stable-diffusion-2", body_for("stable-diffusion-2"))
    assert reply.status == 502
    assert reply.json["Error"]["Code"] == "MODEL_UNAVAILABLE"
    assert reply.json["Error"]["Message"].startswith("Model stabilityai/stable-diffusion-2-1 could not be loaded")
    assert faulty.post(GEN, body_for("stable-diffusion")).status == 200


def refuses_connections(live) -> bool:
    """True once nothing listens on the server's port any more."""
    try:
        socket.create_connection(("127.0.0.1", live.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout or a reset: ask again
        return False
    return False


def start_running_and_queued(live) -> tuple[Background, Background]:
    """One generation held at its first step and one waiting behind it."""
    running = Background(live.post, GEN, body_for("stable-diffusion", Seed=1))
    live.wait_for_jobs("running")
    queued = Background(live.post, GEN, body_for("stable-diffusion", Seed=2))
    live.wait_for_jobs("queued")
    return running, queued


def test_sigterm_turns_the_queue_away_and_lets_the_running_generation_finish(fresh_server):
    live = fresh_server("--queue", "1")
    with live.held() as hold:
        running, queued = start_running_and_queued(live)
        live.process.send_signal(signal.SIGTERM)
        turned_away = queued.result()
        wait_until(lambda: refuses_connections(live), 30, "the server to stop accepting connections")
        assert not running.done
        hold.release()
        reply = running.result()
    assert (turned_away.status, turned_away.json["Error"]["Message"]) == (503, SHUTTING_DOWN)
    assert reply.status == 200 and len(reply.json["Images"]) == 1
    assert live.process.wait(60) == 0
    assert "stopped" in live.log_text()


def test_ctrl_c_cancels_what_still_runs_after_the_shutdown_timeout(fresh_server):
    live = fresh_server("--queue", "1", "--shutdown-timeout", "1")
    with live.held() as hold:
        running, queued = start_running_and_queued(live)
        live.process.send_signal(signal.SIGINT)
        turned_away = queued.result()
        wait_until(lambda: "cancelled 1 generation(s) still running after 1s" in live.log_text(), 30,
                   "the shutdown timeout to cancel the running generation")
        hold.release()  # the cancelled generation stops at its next step
        reply = running.result()
    assert (turned_away.status, turned_away.json["Error"]["Message"]) == (503, SHUTTING_DOWN)
    assert (reply.status, reply.json["Error"]["Code"]) == (409, "CANCELLED")
    assert live.process.wait(60) == 0


def test_a_second_sigterm_exits_at_once(fresh_server):
    live = fresh_server()
    with live.held():
        running = Background(live.post, GEN, body_for("stable-diffusion"))
        live.wait_for_jobs("running")
        live.process.terminate()
        wait_until(lambda: refuses_connections(live), 30, "the first SIGTERM to be handled")
        live.process.terminate()
        code = live.process.wait(30)  # the generation is still held: only the second signal can end it
    assert code == 128 + 15
    with pytest.raises(OSError):  # the server was gone before it could answer
        running.result()
    assert "second SIGTERM: exiting now" in live.log_text()
