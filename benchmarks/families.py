"""GPU benchmark of the flow-matching families at 1024x1024 in bfloat16: SD 3.5 Medium, FLUX.1 schnell and dev.

Each model runs at its family's default steps and guidance (40 / 4.5, 4 / none, 28 / 3.5 distilled;
T5 length 512, 256, 512), and is measured as
  b. plain Diffusers, pipeline resident on the GPU (PyTorch SDPA), called by hand;
  c. PICO served end to end, warm (one `pico serve`, --preload);
  d. PICO served + --fuse-qkv (FLUX.1: fused attention projections);
  e. PICO served + --fuse-qkv --compile (the transformer compiled during --preload, before serving);
  f. PICO served with --offload model: peak GPU memory is what a smaller GPU needs.
It reports seconds per image, denoising steps per second (first to last step) and peak GPU memory,
as JSON and a markdown table, rewritten after every row so a run cut short keeps what it measured.

Published anchors: FLUX.1-dev 1024², 28 steps, one H100: 6.71 s eager, 4.30 s compiled (xDiT);
compile + FlashAttention-3 + float8 about 2.5x over eager. Goals: FLUX.1-dev under 3 s per image
on one H200 with PICO's opt-in speed-ups, schnell under 0.5 s.

Weights are random (benchmarks/fullsize.py --families, about 41 GB: build them on tmpfs):

    python benchmarks/families.py --work /dev/shm/pico-full --out benchmarks/results
    python benchmarks/families.py --tiny            # the tiny models on a CPU: proves the script runs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Server, machine, table, tiny_models, write_results  # noqa: E402
from pico.catalog.families import defaults_for  # noqa: E402
from pico.catalog.models import FLUX_DEV_MODEL, FLUX_SCHNELL_MODEL, SD35_MEDIUM_MODEL  # noqa: E402

# name -> (model id, route)
CASES = {"sd35-medium": (SD35_MEDIUM_MODEL, "stable-diffusion-3"), "flux-schnell": (FLUX_SCHNELL_MODEL, "flux"),
         "flux-dev": (FLUX_DEV_MODEL, "flux")}
GOALS = {"flux-dev": 3.0, "flux-schnell": 0.5}  # seconds per image on one H200, with the speed-ups


def plain(folder: Path, model: str, size: int, repeat: int, device: str) -> dict:
    """b. Plain Diffusers by hand: the pipeline resident on the device, the family's defaults."""
    import torch
    from diffusers import DiffusionPipeline

    family = defaults_for(model)
    cuda = device == "cuda"
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.bfloat16 if cuda else torch.float32,
                                             use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    arguments = dict(height=size, width=size, guidance_scale=family.guidance,
                     max_sequence_length=family.max_sequence_length)
    pipe("warm-up", num_inference_steps=2, **arguments)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, rates = [], []
    for _ in range(repeat):
        times: list[float] = []

        def on_step_end(_pipe: Any, _index: int, _timestep: Any, tensors: dict) -> dict:
            times.append(time.perf_counter())
            return tensors

        started = time.perf_counter()
        pipe("ginger cat", num_inference_steps=family.steps, callback_on_step_end=on_step_end,
             generator=torch.Generator("cpu").manual_seed(0), **arguments)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
        rates.append((len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    del pipe
    if cuda:
        torch.cuda.empty_cache()
    return {"seconds_per_image": min(seconds), "steps_per_s": max((r for r in rates if r), default=None),
            "peak_gib": peak}


def served(models: Path, names: list[str], size: int, repeat: int, device: str, extra: list[str], record: Any) -> None:
    """c-f. PICO served end to end, one warm server for ``names``; ``record(name, result)`` after each."""
    preload = [arg for name in names for arg in ("--preload", CASES[name][0])]
    with Server("--models-dir", str(models), "--device", device, "--max-models", str(len(names)), *preload,
                *extra) as server:
        for name in names:
            model, route = CASES[name]
            body = {"Phrase": "ginger cat", "Width": size, "Height": size, "Model": model, "Seed": 0}
            seconds, rates = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                status, headers, payload = server.request("POST", f"/api/v1/{route}", body)
                seconds.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{name}: {status} {payload[:300]!r}")
                job = json.loads(server.request("GET", f"/api/v1/jobs/{headers['X-Pico-Job']}")[2])
                rates.append(job["StepsPerSecond"])
            metrics = server.request("GET", "/metrics")[2].decode()
            peak = re.search(r"^pico_gpu_memory_peak_bytes (\S+)$", metrics, re.M)
            status_models = json.loads(server.request("GET", "/api/v1/status")[2])["Models"]
            held = next((m["Bytes"] for m in status_models if m["Model"] == model), None)
            record(name, {"seconds_per_image": min(seconds), "steps_per_s": max((r for r in rates if r), default=None),
                          "peak_gib": float(peak.group(1)) / 2**30 if peak else None,
                          "model_gib": held / 2**30 if held else None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pico-full"), help="where the models are built")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", choices=list(CASES), action="append", help="repeatable; default: all three")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: proves the script runs")
    parser.add_argument("--skip", action="append", default=[], choices=["plain", "served", "fused", "compile",
                                                                          "offload"])
    args = parser.parse_args()

    import torch

    names = args.model or list(CASES)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --tiny for the CPU version")
    started = time.perf_counter()
    if args.tiny:
        models, size = tiny_models(), 64
        args.skip += ["compile", "offload"]  # compiling on a CPU outlasts the run; offload needs a GPU
    else:
        from benchmarks.fullsize import write_family_models

        write_family_models(args.work, only=[CASES[name][0] for name in names])
        models, size = args.work, 1024
    print(f"models ready in {time.perf_counter() - started:.0f} s", flush=True)
    rows: dict[str, dict[str, Any]] = {name: {} for name in names}
    base = {"machine": machine(), "device": device, "size": size, "dtype": "float32" if args.tiny else "bfloat16",
            "steps": {name: defaults_for(CASES[name][0]).steps for name in names}, "goals_s": GOALS}

    def record(label: str):
        def keep(name: str, result: dict) -> None:
            rows[name][label] = result
            print(f"{name} | {label} | {result}", flush=True)
            report(rows, names, size, args.tiny, {**base, "rows": rows}, args.out)
        return keep

    if "plain" not in args.skip:
        for name in names:
            record("b. plain Diffusers, resident (SDPA)")(name, plain(models / CASES[name][0], CASES[name][0], size,
                                                                       args.repeat, device))
    phases = [("served", "c. PICO served, warm", []), ("fused", "d. PICO served + --fuse-qkv", ["--fuse-qkv"]),
              ("compile", "e. PICO served + --fuse-qkv --compile", ["--fuse-qkv", "--compile"]),
              ("offload", "f. PICO served + --offload model", ["--offload", "model"])]
    for key, label, extra in phases:
        if key in args.skip:
            continue
        for name in names:  # one server per model: each loads alone, and a long compile keeps the others' rows
            served(models, [name], size, 1 if key == "offload" else args.repeat, device, extra, record(label))
    print(f"all done at {time.perf_counter() - started:.0f} s", flush=True)


def report(rows: dict, names: list[str], size: int, tiny: bool, results: dict, out: Path | None) -> None:
    """Write the rows measured so far as JSON and a markdown table (rows in b-f order)."""
    def number(result: dict, key: str, digits: int) -> str:
        return f"{result[key]:.{digits}f}" if result.get(key) is not None else "n/a"

    lines = []
    for name in names:
        for label, result in sorted(rows[name].items()):
            lines.append([f"{name} {size}x{size}, {results['steps'][name]} steps", label,
                          number(result, "seconds_per_image", 3), number(result, "steps_per_s", 2),
                          number(result, "peak_gib", 1)])
    markdown = table(["model", f"how ({'float32 CPU' if tiny else 'bfloat16'})", "s / image", "steps / s",
                      "peak GiB"], lines)
    write_results("families-tiny" if tiny else "families", results, markdown, out)


if __name__ == "__main__":
    main()
