"""Dynamic batching over HTTP: requests that agree and arrive together share one pipeline call."""

from __future__ import annotations

import threading

import pytest

from tests.server.live import LiveServer
from tests.server.test_api import body_for


@pytest.fixture(scope="module")
def batching(tiny_models, tmp_path_factory):
    live = LiveServer(tiny_models, "--batch-window-ms", "600", "--max-batch", "4", "--queue", "4",
                      log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


def post_together(server, bodies):
    replies = [None] * len(bodies)
    threads = [threading.Thread(target=lambda i=i: replies.__setitem__(
        i, server.post("/api/v1/stable-diffusion", bodies[i]))) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def test_requests_within_the_window_share_a_call(batching):
    bodies = [body_for("stable-diffusion", Phrase=phrase, Seed=seed, Total=total)
              for phrase, seed, total in (("cat", 1, 1), ("dog", 10, 2), ("bird", 20, 1))]
    replies = post_together(batching, bodies)
    assert [r.status for r in replies] == [200, 200, 200]
    assert [[i["Metadata"]["Seed"] for i in r.json["Images"]] for r in replies] == [[1], [10, 11], [20]]
    assert [r.json["Images"][0]["Metadata"]["Phrase"] for r in replies] == ["cat", "dog", "bird"]
    jobs = [batching.get(f"/api/v1/jobs/{r.header('X-Pico-Job')}").json for r in replies]
    assert [job["BatchSize"] for job in jobs] == [3, 3, 3]


def test_requests_that_differ_do_not_share(batching):
    replies = post_together(batching, [body_for("stable-diffusion", Steps=2), body_for("stable-diffusion", Steps=3)])
    assert [r.status for r in replies] == [200, 200]
    jobs = [batching.get(f"/api/v1/jobs/{r.header('X-Pico-Job')}").json for r in replies]
    assert [job["BatchSize"] for job in jobs] == [1, 1]


def test_a_lone_request_waits_only_the_window(batching):
    import time

    reply = batching.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
    alone = batching.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))  # warm, so timed alone
    started = time.monotonic()
    alone = batching.post("/api/v1/stable-diffusion", body_for("stable-diffusion"))
    assert reply.status == 200 and alone.status == 200
    assert time.monotonic() - started < 0.6 + 1.0  # the window, then a two-step generation
