"""Serving overhead: the same request through the library directly and through `pico serve` over HTTP.

Also the health route's latency while a generation runs, and what encoding a 1024x1024
response costs in each format and PNG compression level.

    python benchmarks/overhead.py [--repeat 40] [--steps 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Background, Server, machine, summary, table, time_calls, tiny_models, write_results  # noqa: E402


def direct(models: Path, body: dict, repeat: int) -> list[float]:
    """Seconds per request through Engine.generate, warm, with the server's thread setting."""
    from pico.config import Settings
    from pico.pipelines.engine import Engine
    from pico.schemas.requests import StableDiffusionRequest

    engine = Engine(Settings(models_dir=models, device="cpu"))
    engine.leave_a_core_free()  # as pico serve does, so both sides compute on the same cores
    request = StableDiffusionRequest.parse(body, 2048 * 2048)
    timings = time_calls(lambda: engine.generate(request), repeat, warm_up=3)
    engine.close()
    return timings


def served(server: Server, body: dict, repeat: int) -> list[float]:
    """Seconds per request over HTTP, response received and parsed."""
    def post() -> None:
        status = server.post("/api/v1/stable-diffusion", body).status
        assert status == 200, status

    return time_calls(post, repeat, warm_up=3)


def health_while_generating(server: Server, polls: int) -> list[float]:
    """Health latencies while a long generation holds the only slot."""
    generation = Background(server.post, "/api/v1/stable-diffusion", {"Phrase": "ginger cat", "Steps": 250})
    server.wait_for_health("Busy")
    timings = []
    for _ in range(polls):
        started = time.perf_counter()
        server.get("/api/v1/health")
        timings.append(time.perf_counter() - started)
        time.sleep(0.01)
    generation.result(600)
    return timings


def encode_costs(repeat: int = 5) -> list[list]:
    """Milliseconds and kilobytes to encode a 1024x1024 image (noise: the worst case) as each format."""
    import numpy as np
    from PIL import Image

    from pico.schemas.images import encode_image

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    smooth = Image.linear_gradient("L").resize((1024, 1024)).convert("RGB")
    rows = []
    for label, fmt, level in [("png level 0", "png", 0), ("png level 1", "png", 1), ("png level 6", "png", 6),
                              ("png level 9", "png", 9), ("jpeg q92", "jpeg", 1), ("webp q92", "webp", 1)]:
        for kind, image in (("noise", noise), ("gradient", smooth)):
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                data = encode_image(image, fmt, {"Metadata": {}}, compress_level=level)
                encoded = base64.b64encode(data)
                timings.append(time.perf_counter() - started)
            rows.append([label, kind, min(timings) * 1000, len(encoded) / 1024])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per request (tiny SD 1, 64x64)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    models = tiny_models()
    body = {"Phrase": "ginger cat", "Steps": args.steps, "Seed": 1}
    direct_times = direct(models, body, args.repeat)
    with Server("--models-dir", str(models), "--device", "cpu") as server:
        served_times = served(server, body, args.repeat)
        health = health_while_generating(server, 200)
        small = {"Phrase": "ginger cat", "Steps": 1, "Seed": 1}
        served_small = served(server, small, args.repeat)
    direct_small = direct(models, small, args.repeat)
    encoding = encode_costs()

    d, s, ds, ss, h = (summary(t) for t in (direct_times, served_times, direct_small, served_small, health))
    results = {"machine": machine(), "direct": d, "served": s, "direct_1_step": ds, "served_1_step": ss,
               "health_while_generating": h,
               "encode_1024": [dict(zip(["format", "image", "ms", "kB"], row)) for row in encoding]}
    rows = []
    for label, a, b in ((f"{args.steps} steps", d, s), ("1 step", ds, ss)):
        overhead = b["p50_ms"] - a["p50_ms"]
        goal = max(0.05 * a["p50_ms"], 5.0)
        rows.append([label, a["p50_ms"], a["p95_ms"], b["p50_ms"], b["p95_ms"], overhead,
                     f"{overhead / a['p50_ms'] * 100:.1f} %", "met" if overhead <= goal else "missed"])
    markdown = "\n\n".join([
        table(["request (tiny SD 1, 64x64)", "direct p50 ms", "direct p95 ms", "served p50 ms", "served p95 ms",
               "overhead ms", "overhead", "goal (5 % or 5 ms)"], rows),
        table(["health while generating", "p50 ms", "p95 ms", "p99 ms", "n"],
              [["GET /api/v1/health", h["p50_ms"], h["p95_ms"], h["p99_ms"], h["n"]]]),
        table(["encoding 1024x1024 + base64", "image", "ms", "kB"], encoding),
    ])
    write_results("overhead", results, markdown, args.out)


if __name__ == "__main__":
    main()
