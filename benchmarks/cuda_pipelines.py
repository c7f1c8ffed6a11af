"""Every PICO pipeline on CUDA in float16 at real model sizes, served end to end.

One `pico serve` over the full-size random-weight models (benchmarks/fullsize.py) answers
each route's request twice: the first pays the model load, the second is warm. Each answer
is checked (HTTP 200, the image's size, float16 in its metadata); the table reports both
timings, the denoising rate and the server's peak GPU memory. Then two SDXL requests run at
once on the server's two slots, sharing the weights; a last row runs the CLI as a subprocess,
loading from disk, to show the one-off path on CUDA too.

    python benchmarks/fullsize.py --root /tmp/pico-full
    python benchmarks/cuda_pipelines.py --models /tmp/pico-full --out benchmarks/results

``--tiny`` runs the same checks on the tiny models on the CPU (float32, 64 px).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, Background, Server, machine, table, tiny_models, write_results  # noqa: E402


def _png(size: int, mode: str = "RGB", fill: Any = (200, 120, 60)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size), fill).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def cases(steps: int, tiny: bool) -> list[tuple[str, str, dict, int]]:
    """(label, route, body, expected image side) for every pipeline and the request options that matter."""
    sd, sd2, sdxl = (64, 64, 64) if tiny else (512, 768, 1024)
    image, mask = _png(sd), _png(sd, "L", 255)
    base = {"Phrase": "ginger cat", "Steps": steps, "Seed": 7}
    return [
        ("SD 1.5 text-to-image", "stable-diffusion", base, sd),
        ("SD 1.5, 4 images", "stable-diffusion", {**base, "Total": 4}, sd),
        ("SD 1.5, VaeType ema", "stable-diffusion", {**base, "VaeType": "ema"}, sd),
        ("SD 2.1 text-to-image (DPM-Solver)", "stable-diffusion-2", base, sd2),
        ("SDXL text-to-image", "stable-diffusion-xl", base, sdxl),
        ("SD 1.5 image-to-image (Strength 0.8)", "stable-diffusion-image-to-image",
         {**base, "ImageBase64": image, "Strength": 0.8}, sd),
        ("SD 1.5 inpainting", "stable-diffusion-inpaint", {**base, "ImageBase64": image, "MaskImageBase64": mask},
         sd),
        ("image variation", "stable-diffusion-image-variation", {"ImageBase64": image, "Steps": steps, "Seed": 7},
         sd),
    ]


def check_answer(status: int, payload: bytes, side: int, total: int, device: str) -> str:
    """'' when the answer holds ``total`` images of ``side`` pixels made on ``device``, else what is wrong."""
    from PIL import Image

    if status != 200:
        return f"HTTP {status}: {payload[:300]!r}"
    body = json.loads(payload)
    if len(body["Images"]) != total:
        return f"{len(body['Images'])} images, expected {total}"
    for item in body["Images"]:
        size = Image.open(io.BytesIO(base64.b64decode(item["ImageBase64"]))).size
        if size != (side, side):
            return f"image is {size}, expected {side}x{side}"
    meta = body["Images"][0]["Metadata"]
    if device == "cuda" and meta.get("Precision") != "half":
        return f"not float16: {meta}"
    return ""


def run(models: Path, steps: int, device: str, tiny: bool, keep: Any) -> tuple[list[list[Any]], dict]:
    """Every case through one server; ``keep(rows)`` gets the rows so far after each one."""
    rows, failures = [], []
    with Server("--models-dir", str(models), "--device", device, "--max-models", "8", "--threadsmax", "2") as server:
        for label, route, body, side in cases(steps, tiny):
            timings, rate, problem = [], None, ""
            for _ in range(2):  # the first answer pays the model load, the second is warm
                started = time.perf_counter()
                reply = server.post(f"/api/v1/{route}", body)
                timings.append(time.perf_counter() - started)
                problem = check_answer(reply.status, reply.body, side, body.get("Total", 1), device)
                if problem:
                    break
                job = server.get(f"/api/v1/jobs/{reply.header('X-Pico-Job')}").json
                rate = job["StepsPerSecond"]
            if problem:
                failures.append(f"{label}: {problem}")
            rows.append([label, f"{side}x{side}", "FAILED: " + problem if problem else "ok",
                         f"{timings[0]:.2f}", f"{timings[1]:.2f}" if len(timings) > 1 else "n/a",
                         f"{rate:.1f}" if rate else "n/a"])
            keep(rows)
        rows.append(concurrent_pair(server, steps, 64 if tiny else 1024, device, failures))
        keep(rows)
        metrics = server.get("/metrics").body.decode()
        status_body = server.get("/api/v1/status").json
    peak = re.search(r"^pico_gpu_memory_peak_bytes (\S+)$", metrics, re.M)
    extra = {"peak_gib": float(peak.group(1)) / 2**30 if peak else None,
             "loaded_models": status_body["LoadedModels"], "device": status_body["Device"], "failures": failures}
    return rows, extra


def concurrent_pair(server: Server, steps: int, side: int, device: str, failures: list[str]) -> list[Any]:
    """Two SDXL requests at once on two slots: they share the model's weights (and its VAE)."""
    body = {"Phrase": "ginger cat", "Steps": steps, "Seed": 7}
    started = time.perf_counter()
    pending = [Background(server.post, "/api/v1/stable-diffusion-xl", body) for _ in range(2)]
    answers: list[tuple[int, bytes]] = []
    for each in pending:
        try:
            reply = each.result(3600)
        except Exception:  # noqa: BLE001 - counted below as a request without an answer
            continue
        answers.append((reply.status, reply.body))
    seconds = time.perf_counter() - started
    problems = [p for p in (check_answer(status, payload, side, 1, device) for status, payload in answers) if p]
    if len(answers) != 2:
        problems.append(f"{2 - len(answers)} of the 2 requests got no answer")
    if problems:
        failures.append(f"two SDXL at once: {problems[0]}")
    return ["SDXL, two requests at once (--threadsmax 2)", f"{side}x{side}",
            "FAILED: " + problems[0] if problems else "ok", "n/a", f"{seconds:.2f} (both)", "n/a"]


def run_cli(models: Path, steps: int, device: str) -> list[Any]:
    """The one-off path: `pico stable-diffusion` as a subprocess, loading the model from disk."""
    with tempfile.TemporaryDirectory() as folder:  # the image of random weights is noise: not kept
        command = [sys.executable, "-m", "pico", "stable-diffusion", "ginger cat", "--models-dir", str(models),
                   "--device", device, "--steps", str(steps), "--seed", "7", "--quiet", "--out", folder]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.perf_counter() - started
        written = [line for line in done.stdout.splitlines() if line.endswith(".png") and Path(line).is_file()]
    ok = done.returncode == 0 and len(written) == 1
    return ["CLI: pico stable-diffusion (process start + load + generate)", "default",
            "ok" if ok else f"FAILED: exit {done.returncode}: {done.stderr[-300:]}", f"{seconds:.2f}", "n/a", "n/a"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("/tmp/pico-full"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: proves the script runs")
    args = parser.parse_args()

    device = "cpu" if args.tiny else "cuda"
    models = tiny_models() if args.tiny else args.models
    name = "cuda-pipelines-tiny" if args.tiny else "cuda-pipelines"
    base = {"machine": machine(), "steps": args.steps, "device": device}

    def keep(rows: list[list[Any]], extra: dict | None = None) -> str:
        # written after every row, so a run cut short still leaves what it checked
        print(rows[-1], flush=True)
        markdown = table(["request", "size", "result", "first s (load + generate)", "warm s", "steps / s"], rows)
        if extra is not None:
            peak = f"{extra['peak_gib']:.1f}" if extra["peak_gib"] is not None else "n/a"
            markdown += f"\n\nServer peak GPU memory: {peak} GiB; device {extra['device']}; " \
                        f"{len(extra['loaded_models'])} models resident at the end."
        write_results(name, {**base, "rows": rows, **(extra or {})}, markdown, args.out, quiet=True)
        return markdown

    rows, extra = run(models, args.steps, device, args.tiny, keep)
    rows.append(run_cli(models, args.steps, device))
    print(keep(rows, extra), flush=True)
    if extra["failures"] or any(str(row[2]).startswith("FAILED") for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
