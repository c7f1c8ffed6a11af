"""Dynamic batching over HTTP: requests that agree and arrive together share one pipeline call.

The window is the longest allowed (5 s), so a batch that runs before it ends ran because it
was full: the tests never race the window. Each test sends its requests only once the server
shows the previous ones (as jobs), and holds generations open where the order matters.

--max-batch counts images: every request here asks for one, so a batch of two is full.
"""

from __future__ import annotations

import pytest

from tests.live import Background, wait_until
from tests.server.test_api import body_for

GEN = "/api/v1/stable-diffusion"


@pytest.fixture(scope="module")
def batching(serve):
    return serve("--batch-window-ms", "5000", "--max-batch", "2", "--queue", "2")


def wait_for_active(server, count: int) -> None:
    """Wait until the server lists ``count`` jobs (forming a batch, queued or running)."""
    wait_until(lambda: len(server.jobs()) >= count, 60, f"{count} active job(s)")


def batch_sizes(server, replies) -> list[int]:
    return [server.get(f"/api/v1/jobs/{r.header('X-Pico-Job')}").json["BatchSize"] for r in replies]


def test_requests_that_agree_share_a_call(batching):
    first = Background(batching.post, GEN, body_for("stable-diffusion", Phrase="cat", Seed=1))
    wait_for_active(batching, 1)
    second = batching.post(GEN, body_for("stable-diffusion", Phrase="dog", Seed=10))
    replies = [first.result(), second]
    assert [r.status for r in replies] == [200, 200]
    assert [[i["Metadata"]["Seed"] for i in r.json["Images"]] for r in replies] == [[1], [10]]
    assert [r.json["Images"][0]["Metadata"]["Phrase"] for r in replies] == ["cat", "dog"]
    assert batch_sizes(batching, replies) == [2, 2]


def test_max_batch_caps_a_batch(batching):
    # Four agreeing requests, a cap of two: two full calls of two. Without the cap all four would
    # join the first call (they arrive well within its window).
    with batching.held() as hold:  # held calls keep their jobs listed, so the counts below only grow
        pending = []
        for count, seed in enumerate((1, 2, 3, 4), start=1):
            pending.append(Background(batching.post, GEN, body_for("stable-diffusion", Seed=seed)))
            wait_for_active(batching, count)
        first_call = batching.wait_for_jobs("running", 2)
        assert len(batching.jobs("queued")) == 2  # the second call, full too, waits for the slot
        hold.release()
        replies = [p.result() for p in pending]
    assert [r.status for r in replies] == [200] * 4
    assert batch_sizes(batching, replies) == [2, 2, 2, 2]
    assert {r.header("X-Pico-Job") for r in replies[:2]} == {job["Id"] for job in first_call}


def test_requests_that_differ_do_not_share(batching):
    two_steps = Background(batching.post, GEN, body_for("stable-diffusion", Seed=1, Steps=2))
    wait_for_active(batching, 1)
    three_steps = Background(batching.post, GEN, body_for("stable-diffusion", Seed=2, Steps=3))
    wait_for_active(batching, 2)
    partners = [batching.post(GEN, body_for("stable-diffusion", Seed=seed, Steps=steps))
                for seed, steps in ((3, 2), (4, 3))]  # each fills the batch of the one it agrees with
    replies = [two_steps.result(), three_steps.result(), *partners]
    assert [r.status for r in replies] == [200] * 4
    assert [r.json["Images"][0]["Metadata"]["Quality"] for r in replies] == [2, 3, 2, 3]
    assert batch_sizes(batching, replies) == [2, 2, 2, 2]


def test_requests_forming_a_batch_count_against_the_queue(batching):
    image = body_for("stable-diffusion-image-to-image", Steps=4)  # image-to-image never batches: it runs now
    with batching.held() as hold:
        running = Background(batching.post, "/api/v1/stable-diffusion-image-to-image", image)
        batching.wait_for_jobs("running")
        forming = []
        for count, steps in enumerate((2, 3), start=2):  # two batches forming, one request each
            forming.append(Background(batching.post, GEN, body_for("stable-diffusion", Steps=steps)))
            wait_for_active(batching, count)
        before = batching.get("/api/v1/status").json
        refused = batching.post(GEN, body_for("stable-diffusion", Steps=4))  # a third: over --queue 2
        after = batching.get("/api/v1/status").json
        hold.release()
        assert running.result().status == 200
    # partners fill the two forming batches, so they run now rather than at the end of their windows
    partners = [batching.post(GEN, body_for("stable-diffusion", Steps=steps)) for steps in (2, 3)]
    # a batch takes its place in the queue when its first request arrives: the two forming ones fill it
    assert (before["QueueLength"], [j["State"] for j in before["Jobs"]]) == (2, ["running", "queued", "queued"])
    assert (refused.status, refused.json["Error"]["Code"]) == (503, "GPU_BUSY")
    assert (after["QueueLength"], [j["State"] for j in after["Jobs"]]) == (2, ["running", "queued", "queued"])
    assert [r.status for r in [*(p.result() for p in forming), *partners]] == [200] * 4
