"""GPU benchmark at real model sizes: SD 1.5 at 512x512 and SDXL at 1024x1024, float16, 25 steps.

For each model it measures (a) the original PICO approach (from_pretrained and
enable_model_cpu_offload on every request), (b) plain Diffusers with the pipeline kept on
the GPU (PyTorch SDPA), (c) PICO served end to end, warm, and (d) PICO served with its
speed-ups (channels-last, fused QKV, torch.compile, fp16-safe SDXL VAE). It reports seconds
per image, denoising steps per second (between the first and the last step, as the
published Diffusers figures count them) and peak GPU memory, as JSON and a markdown table.

Weights are random, built from the published configs (benchmarks/fullsize.py) and saved
once in safetensors. One command builds everything:

    python benchmarks/gpu.py --out benchmarks/results

``--tiny`` runs the same script on the tiny models on a CPU, to prove it works anywhere.
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
from pico.pipelines.models import SD1_MODEL, SDXL_FP16_VAE, SDXL_MODEL  # noqa: E402

CASES = {"sd15": (SD1_MODEL, "StableDiffusionPipeline", 512), "sdxl": (SDXL_MODEL, "StableDiffusionXLPipeline", 1024)}
SPEEDUPS = ["--channels-last", "--fuse-qkv", "--compile", "--sdxl-vae", SDXL_FP16_VAE]


def step_timer() -> tuple[dict, Any]:
    """A callback_on_step_end that records when the first and the last step ended."""
    marks: dict[str, Any] = {"times": []}

    def on_step_end(_pipe, _index, _timestep, tensors):
        marks["times"].append(time.perf_counter())
        return tensors

    return marks, on_step_end


def steps_per_second(times: list[float]) -> float | None:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None


def direct(folder: Path, pipeline_class: str, size: int, steps: int, repeat: int, device: str,
           per_request_load: bool) -> dict:
    """(a) when ``per_request_load`` (load and offload every time), else (b): plain Diffusers, resident."""
    import diffusers
    import torch

    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    cls = getattr(diffusers, pipeline_class)

    def load():
        pipe = cls.from_pretrained(folder, dtype=dtype, use_safetensors=True)
        if cuda and per_request_load:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = None if per_request_load else load()
    if pipe is not None:
        pipe("warm-up", num_inference_steps=2, height=size, width=size)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, rates = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        if per_request_load:
            pipe = load()
        marks, callback = step_timer()
        pipe("ginger cat", num_inference_steps=steps, height=size, width=size, callback_on_step_end=callback)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
        rates.append(steps_per_second(marks["times"]))
        if per_request_load:
            pipe = None
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    pipe = None
    if cuda:
        torch.cuda.empty_cache()
    return {"seconds_per_image": min(seconds), "steps_per_s": max(r for r in rates if r), "peak_gib": peak}


def served(models: Path, steps: int, repeat: int, device: str, sizes: dict[str, int], extra: list[str]) -> dict:
    """(c) or (d): PICO served end to end, one warm server for every model (``sizes``: name -> pixels)."""
    preload = [arg for name in sizes for arg in ("--preload", CASES[name][0])]
    results = {}
    with Server("--models-dir", str(models), "--device", device, "--max-models", "2", *preload, *extra) as server:
        for name, size in sizes.items():
            model = CASES[name][0]
            route = "stable-diffusion-xl" if name == "sdxl" else "stable-diffusion"
            body = {"Phrase": "ginger cat", "Steps": steps, "Width": size, "Height": size, "Model": model}
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
            results[name] = {"seconds_per_image": min(seconds), "steps_per_s": max(rates),
                             "peak_gib": float(peak.group(1)) / 2**30 if peak else None}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pico-gpu-bench"), help="where the models go")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", choices=list(CASES), action="append", help="repeatable; default: both")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: proves the script runs")
    parser.add_argument("--skip", action="append", default=[], choices=["original", "plain", "served", "speedups"])
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for row d")
    args = parser.parse_args()

    import torch

    names = args.model or list(CASES)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --tiny for the CPU version")
    started = time.perf_counter()
    if args.tiny:
        models = tiny_models()
        sizes = {name: 64 for name in names}
        speedups = ["--channels-last", "--fuse-qkv"]  # compiling on a CPU takes longer than the whole run
    else:
        from benchmarks.fullsize import write_full_size_models

        write_full_size_models(args.work)
        models = args.work
        sizes = {name: CASES[name][2] for name in names}
        speedups = [*SPEEDUPS, "--compile-mode", args.compile_mode]
    print(f"models ready in {time.perf_counter() - started:.0f} s", flush=True)
    rows: dict[str, dict[str, Any]] = {name: {} for name in names}
    for name in names:
        model, pipeline_class, _ = CASES[name]
        size = sizes[name]
        if "original" not in args.skip:
            rows[name]["a. original (load + offload per request)"] = direct(
                models / model, pipeline_class, size, args.steps, max(1, args.repeat - 1), device, True)
        if "plain" not in args.skip:
            rows[name]["b. plain Diffusers, resident (SDPA)"] = direct(
                models / model, pipeline_class, size, args.steps, args.repeat, device, False)
        print(f"{name}: direct runs done at {time.perf_counter() - started:.0f} s", flush=True)
    with_sizes = [f"{name} {sizes[name]}px" for name in names]
    if "served" not in args.skip:
        for name, result in served(models, args.steps, args.repeat, device, sizes, []).items():
            rows[name]["c. PICO served, warm"] = result
    if "speedups" not in args.skip:
        for name, result in served(models, args.steps, args.repeat, device, sizes, speedups).items():
            rows[name][f"d. PICO served + {' '.join(speedups)}"] = result
    print(f"all done at {time.perf_counter() - started:.0f} s", flush=True)

    results = {"machine": machine(), "steps": args.steps, "device": device, "models": with_sizes, "rows": rows}
    lines = []
    for name in names:
        for label, result in rows[name].items():
            peak = f"{result['peak_gib']:.1f}" if result.get("peak_gib") is not None else "n/a"
            lines.append([f"{name} {sizes[name]}x{sizes[name]}", label, result["seconds_per_image"],
                          result["steps_per_s"], peak])
    markdown = table(["model", f"how ({args.steps} steps, {'float32 CPU' if args.tiny else 'float16'})",
                      "s / image", "steps / s", "peak GiB"], [
        [m, how, f"{s:.3f}", f"{r:.1f}" if r else "n/a", p] for m, how, s, r, p in lines])
    write_results("gpu-tiny" if args.tiny else "gpu", results, markdown, args.out)


if __name__ == "__main__":
    main()
