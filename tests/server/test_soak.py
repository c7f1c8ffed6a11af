"""Soak: concurrent clients send a mix of valid and bad requests to a live server for a bounded time.

It asserts what an operator needs: no 5xx but the expected 503s, every answer valid JSON of
the documented shape, every valid request's images decode, no memory growth per request,
and a health route that answers within 100 ms throughout. PICO_SOAK_SECONDS sets the length.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import b64, png_bytes
from tests.server.live import LiveServer

SECONDS = float(os.environ.get("PICO_SOAK_SECONDS", "100"))
CLIENTS = 4
IMAGE = b64(png_bytes())
MASK = b64(png_bytes(color=255, mode="L"))
GEN = "/api/v1/stable-diffusion"

# (name, method, path, body or raw bytes, expected statuses besides 503 GPU_BUSY)
VALID = [
    ("sd", "POST", GEN, {"Phrase": "ginger cat", "Steps": 2}, {200}),
    ("sd-two", "POST", GEN, {"Phrase": "cat", "Steps": 2, "Total": 2, "Seed": 7}, {200}),
    ("xl", "POST", "/api/v1/stable-diffusion-xl", {"Phrase": "ünïcødé 猫 🐱", "Steps": 2}, {200}),
    ("img2img", "POST", "/api/v1/stable-diffusion-image-to-image",
     {"Phrase": "cat", "ImageBase64": IMAGE, "Steps": 3}, {200}),
    ("inpaint", "POST", "/api/v1/stable-diffusion-inpaint",
     {"Phrase": "cat", "ImageBase64": IMAGE, "MaskImageBase64": MASK, "Steps": 2}, {200}),
    ("variation", "POST", "/api/v1/stable-diffusion-image-variation", {"ImageBase64": IMAGE, "Steps": 2}, {200}),
    ("long-phrase", "POST", GEN, {"Phrase": "cat " * 2000, "Steps": 2}, {200}),
    ("openai", "POST", "/v1/images/generations", {"prompt": "cat", "size": "64x64", "steps": 2}, {200}),
]
BAD = [
    ("not-json", "POST", GEN, b"{not json", {400}),
    ("truncated", "POST", GEN, b'{"Phrase": "cat", "Ste', {400}),
    ("array", "POST", GEN, [1, 2], {400}),
    ("nested", "POST", GEN, b"[" * 50000 + b"]" * 50000, {400}),
    ("empty", "POST", GEN, b"", {400}),
    ("missing", "POST", GEN, {"Total": 1}, {422}),
    ("wrong-type", "POST", GEN, {"Phrase": ["cat"]}, {422}),
    ("out-of-range", "POST", GEN, {"Phrase": "cat", "Total": 50}, {422}),
    ("null-number", "POST", GEN, {"Phrase": "cat", "GuidanceScale": None}, {422}),
    ("bad-base64", "POST", "/api/v1/stable-diffusion-image-to-image", {"Phrase": "x", "ImageBase64": "%%%"}, {422}),
    ("not-image", "POST", "/api/v1/stable-diffusion-image-to-image", {"Phrase": "x", "ImageBase64": b64(b"no")},
     {422}),
    ("bad-size", "POST", GEN, {"Phrase": "cat", "Width": 100, "Height": 64}, {422}),
    ("path-model", "POST", GEN, {"Phrase": "cat", "Model": "../../etc/passwd"}, {422}),
    ("other-model", "POST", GEN, {"Phrase": "cat", "Model": "someone/else"}, {403}),
    ("too-big", "POST", GEN, {"Phrase": "x" * (1024 * 1024 + 1)}, {413}),
    ("wrong-method", "GET", GEN, None, {405}),
    ("no-route", "POST", "/api/v1/nothing", {}, {404}),
    ("openai-bad", "POST", "/v1/images/generations", {"prompt": "cat", "n": 99}, {400}),
]


@pytest.fixture(scope="module")
def soaked(tiny_models, tmp_path_factory):
    # --max-models 8: every model stays warm, as a production server's do; loading is the slow path.
    live = LiveServer(tiny_models, "--queue", "2", "--max-body-mb", "1", "--max-models", "8",
                      log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send(server, case):
    name, method, path, body, _ = case
    if isinstance(body, bytes):
        return server.request(method, path, raw=body, headers={"Content-Type": "application/json"})
    return server.request(method, path, body)


def check(case, reply) -> str | None:
    """None when the reply is right for the case, else what is wrong."""
    name, _, path, _, expected = case
    openai_route = path.startswith("/v1/")
    busy_status = 429 if openai_route else 503
    if reply.status not in expected | {busy_status}:
        return f"{name}: status {reply.status}: {reply.body[:300]!r}"
    try:
        data = json.loads(reply.body)
    except ValueError:
        return f"{name}: not JSON: {reply.body[:200]!r}"
    if reply.status == busy_status:
        code = data["error"]["code"] if openai_route else data["Error"]["Code"]
        return None if code in ("GPU_BUSY", "gpu_busy") else f"{name}: {reply.status} {code}"
    if reply.status != 200:
        ok = set(data["error"]) >= {"message", "type"} if openai_route else set(data["Error"]) >= {"Code", "Message"}
        return None if ok else f"{name}: error body off-shape: {data}"
    encoded = [d["b64_json"] for d in data["data"]] if openai_route else [i["ImageBase64"] for i in data["Images"]]
    for value in encoded:
        Image.open(io.BytesIO(base64.b64decode(value))).load()
    return None


def test_soak(soaked):
    for case in VALID:  # warm-up: every model loaded, every path taken once
        assert check(case, send(soaked, case)) is None
    for case in VALID:
        send(soaked, case)
    baseline = rss_bytes(soaked.process.pid)

    problems: list[str] = []
    counts: dict[int, int] = {}
    health_worst = [0.0]
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            case = rng.choice(VALID + BAD)
            reply = send(soaked, case)
            counts[reply.status] = counts.get(reply.status, 0) + 1
            problem = check(case, reply)
            if problem:
                problems.append(problem)

    def health() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            reply = soaked.get("/api/v1/health", timeout=5)
            health_worst[0] = max(health_worst[0], time.perf_counter() - started)
            if reply.status != 200:
                problems.append(f"health: {reply.status}")
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads.append(threading.Thread(target=health))
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(120)

    after = rss_bytes(soaked.process.pid)
    assert problems == []
    assert counts.get(200, 0) >= 10 and sum(counts.values()) >= 50, counts
    assert health_worst[0] < 0.1, f"health took {health_worst[0] * 1000:.0f} ms"
    assert after <= baseline * 1.10, f"RSS grew from {baseline >> 20} MiB to {after >> 20} MiB"
    assert soaked.get("/api/v1/health").json == {"Status": "Idle"}
