"""Live progress over HTTP against a real `pico serve` on the tiny models: event streams, their limit, previews.

Long jobs are held open with the hold fault (``live.held()``): each is held at its first step until
the test releases it (or moves it on with ``hold.to_step``), and every test acts on an event it has
read, never on a timer, so nothing depends on how fast this machine runs a step.
"""

from __future__ import annotations

import base64
import io
import statistics
import time

import pytest
from PIL import Image

from tests.live import Background, LiveServer, wait_until
from tests.server.sse import Event, EventStream

SD = "/api/v1/stable-diffusion"
MAX_STREAMS = 2
HELD_STEPS = 20  # any count above the steps a test moves a held job to: how long a step takes never matters


@pytest.fixture(scope="module")
def live(serve):
    """One slot, two queue places, two event streams at most."""
    return serve("--queue", "2", "--max-streams", str(MAX_STREAMS))


def stream(live: LiveServer, body: dict, query: str = "") -> EventStream:
    return EventStream(live.port, "POST", SD + query, body)


def follow(live: LiveServer, job_id: str, query: str = "") -> EventStream:
    return EventStream(live.port, "GET", f"/api/v1/jobs/{job_id}/events{query}")


def held_job(live: LiveServer) -> tuple[EventStream, str]:
    """A streamed generation held at its first step (inside ``live.held()``); returns once that step was seen."""
    job = stream(live, {"Phrase": "hold", "Steps": HELD_STEPS, "Seed": 5})
    assert job.status == 200, job.body
    assert job.until("step")[-1].data["Step"] == 1
    return job, job.headers["x-pico-job"]


def cancel(live: LiveServer, job_id: str) -> None:
    assert live.request("DELETE", f"/api/v1/jobs/{job_id}").status == 200


def decode(b64: str, fmt: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == fmt
    image.load()
    return image


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def test_a_streamed_generation_sends_queued_started_each_step_its_previews_then_done_with_its_response(live):
    job = stream(live, {"Phrase": "ginger cat", "Steps": 6, "Seed": 42}, "?previews=2")
    assert job.status == 200 and job.is_stream and job.headers["cache-control"] == "no-cache"
    events = job.all()
    job_id = job.headers["x-pico-job"]

    assert events[0] == Event("queued", {"Job": job_id, "Position": 0})
    assert events[1] == Event("started", {"Job": job_id, "BatchSize": 1})
    assert events[-1].name == "done" and "done" not in names(events[:-1])
    steps = [e.data["Step"] for e in events if e.name == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    assert all(e.data["Steps"] == 6 for e in events if e.name == "step")
    # Previews every 2 steps, each after the step it shows; none is dropped for a reader this quick.
    last_step = 0
    previews = []
    for event in events:
        if event.name == "step":
            last_step = event.data["Step"]
        elif event.name == "preview":
            assert event.data["Step"] <= last_step
            previews.append(event)
    assert [e.data["Step"] for e in previews] == [2, 4, 6]
    for event in previews:
        (image,) = [decode(b64, "JPEG") for b64 in event.data["Images"]]
        assert image.size == (event.data["Width"], event.data["Height"]) == (8, 8)  # 1/8 of 64x64
    # done carries the very response a plain request gets: same job record, same pixels.
    done = events[-1].data
    assert done["Job"]["Id"] == job_id and done["Job"]["State"] == "done" and done["Job"]["Seeds"] == [42]
    plain = live.post(SD, {"Phrase": "ginger cat", "Steps": 6, "Seed": 42}).json
    streamed = done["Response"]
    assert streamed["Images"][0]["Metadata"] == plain["Images"][0]["Metadata"]
    assert decode(streamed["Images"][0]["ImageBase64"], "PNG").tobytes() == \
        decode(plain["Images"][0]["ImageBase64"], "PNG").tobytes()


def test_previews_come_only_when_asked(live):
    events = stream(live, {"Phrase": "ginger cat", "Steps": 4, "Seed": 1}).all()
    assert "preview" not in names(events) and events[-1].name == "done"
    events = stream(live, {"Phrase": "ginger cat", "Steps": 4, "Seed": 1}, "?previews=0").all()
    assert "preview" not in names(events)
    events = stream(live, {"Phrase": "ginger cat", "Steps": 4, "Seed": 1}, "?previews=3").all()
    assert [e.data["Step"] for e in events if e.name == "preview"] == [3, 4]  # every 3 steps, and the last


def test_requests_refused_before_they_are_jobs_get_a_plain_error_not_a_stream(live):
    bad = stream(live, {"Phrase": "x", "Steps": 999})
    assert bad.status == 422 and not bad.is_stream
    assert bad.json["Error"]["Field"] == "Steps"
    bad = stream(live, {"Phrase": "x", "Steps": 4}, "?previews=soon")
    assert bad.status == 422 and bad.json["Error"]["Field"] == "previews"
    missing = follow(live, "000000-nope")
    assert missing.status == 404 and missing.json["Error"]["Code"] == "NOT_FOUND"


def test_a_follower_sees_the_job_to_its_end_and_a_finished_job_at_once(live):
    with live.held() as hold:
        job, job_id = held_job(live)
        watcher = follow(live, job_id, "?previews=1")
        assert watcher.status == 200 and watcher.is_stream
        seen = watcher.until("step")
        assert names(seen) == ["started", "step"]  # it came while the job ran: no queued
        assert seen[1].data["Step"] == 1
        cancel(live, job_id)
        hold.release()  # the cancelled job stops at its next step
        rest = watcher.all()
    assert rest[-1].name == "cancelled" and rest[-1].data["Job"]["State"] == "cancelled"
    assert job.all()[-1].name == "cancelled"
    # A job that has ended: its last event, and the stream is over.
    again = follow(live, job_id).all()
    assert names(again) == ["started", "step", "cancelled"]


def test_a_cancelled_jobs_stream_ends_with_cancelled_and_a_queued_one_never_starts(live):
    with live.held() as hold:
        running, running_id = held_job(live)
        waiting = stream(live, {"Phrase": "behind", "Steps": 4})
        first = next(iter(waiting))
        assert first == Event("queued", {"Job": waiting.headers["x-pico-job"], "Position": 1})
        cancel(live, waiting.headers["x-pico-job"])
        rest = waiting.all()  # at once: the running job still holds the slot
        assert names(rest) == ["cancelled"] and rest[0].data["Job"]["State"] == "cancelled"
        assert rest[0].data["Job"]["Step"] == 0 and "was cancelled" in rest[0].data["Message"]
        cancel(live, running_id)
        hold.release()  # the cancelled job stops at its next step
        events = running.all()
    assert events[-1].name == "cancelled" and events[-1].data["Job"]["State"] == "cancelled"
    assert "done" not in names(events)


def ended(live: LiveServer, job_id: str) -> dict:
    """The job's record once it is no longer queued or running."""
    def record() -> dict | None:
        job = live.get(f"/api/v1/jobs/{job_id}").json
        return job if job["State"] not in ("queued", "running") else None

    return wait_until(record, 60, f"job {job_id} to end")


def test_a_streamed_request_whose_client_goes_away_is_cancelled(live):
    with live.held() as hold:
        job, job_id = held_job(live)
        job.drop()
        hold.release()
        record = ended(live, job_id)
    # It stops where it was held, or at the next step: the step event the client read goes out just
    # before the job looks at its client for that step.
    assert (record["State"], record["Step"]) == ("cancelled", 2), record  # held at step 1, stopped at the next
    assert record["Error"].endswith("its client disconnected") or "was cancelled" in record["Error"], record


def test_a_follower_that_goes_away_frees_its_stream_at_once_and_the_job_goes_on(live):
    with live.held() as hold:
        job, job_id = held_job(live)
        followers = [follow(live, job_id) for _ in range(MAX_STREAMS)]
        assert all(f.status == 200 for f in followers)
        refused = follow(live, job_id)
        assert refused.status == 503 and refused.headers["retry-after"] == "2"
        assert "--max-streams" in refused.json["Error"]["Message"]
        followers[0].drop()

        def another_follower() -> EventStream | None:
            another = follow(live, job_id)
            return another if another.status == 200 else None

        # within a poll interval and then some: the dropped follower's stream is free
        another = wait_until(another_follower, 1.0, "the dropped follower's stream to be free")
        assert live.get(f"/api/v1/jobs/{job_id}").json["State"] == "running"
        hold.release()  # the job runs to its end: the follower that left did not stop it
        assert job.all()[-1].name == "done"
    assert another.all()[-1].name == "done"
    assert followers[1].all()[-1].name == "done"
    record = live.get(f"/api/v1/jobs/{job_id}").json
    assert (record["State"], record["Step"]) == ("done", HELD_STEPS)


def test_health_and_status_answer_in_milliseconds_with_every_stream_open(live):
    with live.held() as hold:
        job, job_id = held_job(live)
        followers = [follow(live, job_id, "?previews=1") for _ in range(MAX_STREAMS)]
        assert all(f.status == 200 for f in followers)
        assert follow(live, job_id).status == 503  # the limit is reached
        timings = {"/api/v1/health": [], "/api/v1/status": []}
        for _ in range(20):
            for path, seen in timings.items():
                started = time.perf_counter()
                assert live.get(path, timeout=5).status == 200
                seen.append(time.perf_counter() - started)
        assert live.get(f"/api/v1/jobs/{job_id}").json["State"] == "running"
        cancel(live, job_id)
        hold.release()
        for follower in followers:
            follower.all()
        job.all()
    for path, seen in timings.items():
        assert statistics.median(seen) < 0.05 and max(seen) < 0.5, (path, seen)


def test_a1111_progress_shows_the_running_jobs_latest_preview(live):
    body = {"prompt": "hold", "steps": HELD_STEPS, "seed": 3, "width": 64, "height": 64}
    with live.held() as hold:
        reply = Background(live.post, "/sdapi/v1/txt2img", body)
        live.wait_for_jobs("running")  # held at its first step
        first = live.get("/sdapi/v1/progress").json
        # No preview yet; this first poll turns them on, every 10 steps (A1111's show_progress_every_n_steps).
        assert first["state"]["sampling_step"] == 1 and first["current_image"] is None
        hold.to_step(10)

        def preview_at_step_10() -> dict | None:
            progress = live.get("/sdapi/v1/progress").json
            return progress if progress["state"]["sampling_step"] == 10 and progress["current_image"] else None

        progress = wait_until(preview_at_step_10, 60, "a preview at step 10, where the job is held")
        skipped = live.get("/sdapi/v1/progress?skip_current_image=true").json
        assert skipped["state"]["sampling_step"] == 10 and skipped["current_image"] is None
        preview = decode(progress["current_image"], "PNG")
        assert preview.size == (8, 8) and preview.mode == "RGB"
        live.post("/sdapi/v1/interrupt")
        hold.release()
        assert reply.result().status == 200
    assert live.get("/sdapi/v1/progress").json["current_image"] is None  # nothing runs: no image
