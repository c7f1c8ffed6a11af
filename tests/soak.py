"""Soak: concurrent clients send a mix of valid and bad requests to a live server for a while.

What an operator needs, measured: no 5xx but the expected 503s (429 on the OpenAI routes), every
answer valid JSON of the documented shape, every valid request's images decode, the server's
memory after against before, and how fast the health route answers throughout. The test suite
runs it briefly (tests/server/test_soak.py, marked ``soak``); ``benchmarks/soak.py`` runs it long.
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _png_b64(color, mode: str) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (64, 64), color).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data body as the OpenAI SDKs send it (fields and file parts)."""

    fields: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, bytes], ...]
    boundary: str = "pico-soak-boundary"

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def encode(self) -> bytes:
        parts = [f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                 for name, value in self.fields]
        parts += [f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                  f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in self.files]
        return b"".join(parts) + f"--{self.boundary}--\r\n".encode()


def _noise_png(size: int) -> bytes:
    """A PNG of noise (it does not compress): multipart bodies of a few hundred KB, to show a leak."""
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


UPLOAD = _noise_png(256)
IMAGE = _png_b64((200, 40, 40), "RGB")
MASK = _png_b64(255, "L")
GEN = "/api/v1/stable-diffusion"
# The server a soak runs against: every model stays warm, as a production server's do.
SERVER_ARGS = ("--queue", "2", "--max-body-mb", "1", "--max-models", "8")

# (name, method, path, body or raw bytes, expected statuses besides the busy answer)
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
    ("openai-edit", "POST", "/v1/images/edits",
     Multipart((("prompt", "cat"), ("size", "64x64"), ("steps", "2")), (("image", UPLOAD),)), {200}),
    ("openai-variation", "POST", "/v1/images/variations",
     Multipart((("size", "64x64"), ("steps", "2")), (("image", UPLOAD),)), {200}),
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
    ("not-image", "POST", "/api/v1/stable-diffusion-image-to-image",
     {"Phrase": "x", "ImageBase64": base64.b64encode(b"no").decode()}, {422}),
    ("bad-size", "POST", GEN, {"Phrase": "cat", "Width": 100, "Height": 64}, {422}),
    ("path-model", "POST", GEN, {"Phrase": "cat", "Model": "../../etc/passwd"}, {422}),
    ("other-model", "POST", GEN, {"Phrase": "cat", "Model": "someone/else"}, {403}),
    ("too-big", "POST", GEN, {"Phrase": "x" * (1024 * 1024 + 1)}, {413}),
    ("wrong-method", "GET", GEN, None, {405}),
    ("no-route", "POST", "/api/v1/nothing", {}, {404}),
    ("openai-bad", "POST", "/v1/images/generations", {"prompt": "cat", "n": 99}, {400}),
]


@dataclass
class SoakResult:
    """What a soak saw."""

    seconds: float
    problems: list[str] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    health_seconds: list[float] = field(default_factory=list)
    rss_start: int = 0  # after the warm-up requests, before the load
    rss_before: int = 0  # once the load has run ``settle`` seconds: allocators and caches at their working size
    rss_after: int = 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send(server, case):
    """Send one case; raw bytes go as they are."""
    name, method, path, body, _ = case
    if isinstance(body, Multipart):
        return server.request(method, path, raw=body.encode(), headers={"Content-Type": body.content_type})
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
    from PIL import Image

    encoded = [d["b64_json"] for d in data["data"]] if openai_route else [i["ImageBase64"] for i in data["Images"]]
    for value in encoded:
        Image.open(io.BytesIO(base64.b64decode(value))).load()
    return None


def soak(server, seconds: float, clients: int = 4, health_every: float = 0.05, settle: float = 0.0) -> SoakResult:
    """Warm every path, then run ``clients`` random clients and a health poller for ``seconds``.

    Memory growth is measured from ``settle`` seconds into the load: concurrent requests of every
    shape first grow the allocator's arenas and the caches to a working size, then a leak-free
    server stays flat.
    """
    result = SoakResult(seconds)
    for case in VALID:  # warm-up: every model loaded, every path taken once
        problem = check(case, send(server, case))
        if problem:
            result.problems.append(f"warm-up {problem}")
    for case in VALID:
        send(server, case)
    result.rss_start = result.rss_before = rss_bytes(server.process.pid)
    stop = threading.Event()
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            case = rng.choice(VALID + BAD)
            reply = send(server, case)
            problem = check(case, reply)
            with lock:
                result.counts[reply.status] = result.counts.get(reply.status, 0) + 1
                if problem:
                    result.problems.append(problem)

    def health() -> None:
        while not stop.wait(health_every):
            started = time.perf_counter()
            reply = server.get("/api/v1/health", timeout=5)
            result.health_seconds.append(time.perf_counter() - started)
            if reply.status != 200:
                result.problems.append(f"health: {reply.status}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=health))
    for thread in threads:
        thread.start()
    if settle:
        stop.wait(settle)  # a length of load, not an ordering of events
        result.rss_before = rss_bytes(server.process.pid)
    stop.wait(seconds - settle)  # the soak's length, not an ordering of events
    stop.set()
    for thread in threads:
        thread.join(120)
    result.rss_after = rss_bytes(server.process.pid)
    return result
