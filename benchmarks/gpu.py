"""GPU benchmark at real model sizes: SD 1.5 at 512x512 and SDXL at 1024x1024, float16, 25 steps.

For each model it measures (a) the original PICO approach (from_pretrained and
enable_model_cpu_offload on every request), (b) plain Diffusers with the pipeline kept on
the GPU (PyTorch SDPA), (c) PICO served end to end, warm, (d) PICO served with its cheap
speed-ups (channels-last, fused QKV, fp16-safe SDXL VAE) and (e) those plus torch.compile of
the UNet (compiled during the server's warm-up, before it answers). It reports seconds
per image, denoising steps per second (between the first and the last step, as the
published Diffusers figures count them) and peak GPU memory, as JSON and a markdown table.

Weights are random, built from the published configs (benchmarks/fullsize.py) and saved
once in safetensors. One command builds everything:

    python benchmarks/gpu.py --out benchmarks/results

The results are rewritten after every row, so a run cut short keeps what it measured.

``--tiny`` runs the same script on the tiny models on a CPU, to prove it works anywhere.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Server, machine, table, tiny_models, write_results  # noqa: E402
from pico.catalog.models import SD1_MODEL, SDXL_FP16_VAE, SDXL_MODEL  # noqa: E402

CASES = {"sd15": (SD1_MODEL, "StableDiffusionPipeline", 512), "sdxl": (SDXL_MODEL, "StableDiffusionXLPipeline", 1024)}
SPEEDUPS = ["--channels-last", "--fuse-qkv", "--sdxl-vae", SDXL_FP16_VAE]


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


def served(models: Path, steps: int, repeat: int, device: str, sizes: dict[str, int], extra: list[str],
           record: Any) -> None:
    """(c) to (e): PICO served end to end, one warm server for every model (``sizes``: name -> pixels).

    ``record(name, result)`` gets each model's result as soon as it is measured.
    """
    preload = [arg for name in sizes for arg in ("--preload", CASES[name][0])]
    with Server("--models-dir", str(models), "--device", device, "--max-models", "2", *preload, *extra) as server:
        for name, size in sizes.items():
            model = CASES[name][0]
            route = "stable-diffusion-xl" if name == "sdxl" else "stable-diffusion"
            body = {"Phrase": "ginger cat", "Steps": steps, "Width": size, "Height": size, "Model": model}
            seconds, rates = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                reply = server.post(f"/api/v1/{route}", body)
                seconds.append(time.perf_counter() - started)
                if reply.status != 200:
                    raise RuntimeError(f"{name}: {reply.status} {reply.body[:300]!r}")
                job = server.get(f"/api/v1/jobs/{reply.header('X-Pico-Job')}").json
                rates.append(job["StepsPerSecond"])
            metrics = server.get("/metrics").body.decode()
            peak = re.search(r"^pico_gpu_memory_peak_bytes (\S+)$", metrics, re.M)
            record(name, {"seconds_per_image": min(seconds), "steps_per_s": max(rates),
                          "peak_gib": float(peak.group(1)) / 2**30 if peak else None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pico-gpu-bench"), help="where the models go")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", choices=list(CASES), action="append", help="repeatable; default: both")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: proves the script runs")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["original", "plain", "served", "speedups", "compile"])
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for row e")
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
        speedups = SPEEDUPS[:2]
        compiled: list[str] = []  # compiling on a CPU takes longer than the whole run
    else:
        from benchmarks.fullsize import write_full_size_models

        write_full_size_models(args.work, only=[SD1_MODEL, SDXL_MODEL, SDXL_FP16_VAE])
        models = args.work
        sizes = {name: CASES[name][2] for name in names}
        speedups = SPEEDUPS
        compiled = [*SPEEDUPS, "--compile", "--compile-mode", args.compile_mode]
    print(f"models ready in {time.perf_counter() - started:.0f} s", flush=True)
    rows: dict[str, dict[str, Any]] = {name: {} for name in names}
    with_sizes = [f"{name} {sizes[name]}px" for name in names]
    base = {"machine": machine(), "steps": args.steps, "device": device, "models": with_sizes}

    def record(label: str):
        def keep(name: str, result: dict) -> None:
            rows[name][label] = result
            print(f"{name} | {label} | {result}", flush=True)
            # written after every row, so a run cut short still leaves what it measured
            report(rows, names, sizes, args, {**base, "rows": rows})
        return keep

    for name in names:
        model, pipeline_class, _ = CASES[name]
        size = sizes[name]
        if "plain" not in args.skip:
            record("b. plain Diffusers, resident (SDPA)")(name, direct(
                models / model, pipeline_class, size, args.steps, args.repeat, device, False))
        if "original" not in args.skip:
            record("a. original (load + offload per request)")(name, direct(
                models / model, pipeline_class, size, args.steps, max(1, args.repeat - 1), device, True))
    phases = [("served", "c. PICO served, warm", [])]
    if speedups:
        phases.append(("speedups", f"d. PICO served + {' '.join(speedups)}", speedups))
    if compiled:
        phases.append(("compile", f"e. PICO served + {' '.join(compiled)}", compiled))
    for key, label, extra in phases:
        if key in args.skip:
            continue
        if key == "compile":  # one server per model: a long compile of one keeps the other's result
            for name in names:
                served(models, args.steps, args.repeat, device, {name: sizes[name]}, extra, record(label))
        else:
            served(models, args.steps, args.repeat, device, sizes, extra, record(label))
    print(f"all done at {time.perf_counter() - started:.0f} s", flush=True)


def report(rows: dict, names: list[str], sizes: dict[str, int], args: argparse.Namespace, results: dict) -> None:
    """Write the rows measured so far as JSON and a markdown table (rows in a-e order)."""
    lines = []
    for name in names:
        for label, result in sorted(rows[name].items()):
            peak = f"{result['peak_gib']:.1f}" if result.get("peak_gib") is not None else "n/a"
            rate = f"{result['steps_per_s']:.1f}" if result.get("steps_per_s") else "n/a"
            lines.append([f"{name} {sizes[name]}x{sizes[name]}", label, f"{result['seconds_per_image']:.3f}",
                          rate, peak])
    markdown = table(["model", f"how ({args.steps} steps, {'float32 CPU' if args.tiny else 'float16'})",
                      "s / image", "steps / s", "peak GiB"], lines)
    write_results("gpu-tiny" if args.tiny else "gpu", results, markdown, args.out)

if __name__ == "__main__":
    main()
