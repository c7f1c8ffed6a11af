"""Checkpoints and LoRAs: the first request on a single-file checkpoint, switching LoRA sets, hot-swap with --compile.

Through PICO's engine, on the tiny models (CPU, by default) or on full-size random-weight ones
(``benchmarks/fullsize.py`` writes them; this script writes a single-file SDXL checkpoint from
them with ``ldm_export.write_single_file`` and rank-R LoRAs with ``tiny_loras.write_tiny_lora``).
The GPU goal: switching the LoRA set of a warm SDXL model costs under 10 % of a 25-step 1024²
generation. Files are read from a warm page cache (a first run writes them); the first request on a
checkpoint includes hashing it (A1111's hash, computed once per file version and cached).

    python benchmarks/checkpoints_loras.py                                   # CPU, tiny SD 1.5 and SDXL
    python benchmarks/checkpoints_loras.py --models /tmp/pico-full --family sdxl --device cuda \\
        --rank 32 --steps 25 --size 1024 --out benchmarks/results           # GPU, full size
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary, table, tiny_models, write_results  # noqa: E402
from pico.catalog.models import SD1_MODEL, SDXL_MODEL  # noqa: E402

FAMILIES = {"sd15": (SD1_MODEL, "stable-diffusion"), "sdxl": (SDXL_MODEL, "stable-diffusion-xl")}


def prepare(models: Path, family: str, rank: int, scratch: Path) -> tuple[Path, Path, list[str]]:
    """(checkpoint folder, LoRA folder, LoRA names): a single file of the family's model and two LoRAs, written once."""
    from pico.pipelines.ldm_export import write_single_file
    from pico.pipelines.tiny_loras import write_tiny_lora

    model_id, _ = FAMILIES[family]
    checkpoints, loras = scratch / "checkpoints", scratch / "loras"
    checkpoint = checkpoints / f"bench-{family}.safetensors"
    if not checkpoint.exists():
        started = time.perf_counter()
        write_single_file(models / model_id, checkpoint)
        print(f"wrote {checkpoint.name} ({checkpoint.stat().st_size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    names = []
    for seed, form in ((1, "diffusers"), (2, "kohya"), (3, "diffusers")):
        name = f"bench-{family}-r{rank}-{seed}"
        path = loras / f"{name}.safetensors"
        if not path.exists():
            write_tiny_lora(models / model_id, path, format=form, rank=rank, alpha=rank, seed=seed, text_encoder=True)
        names.append(name)
    return checkpoints, loras, names


def engine_for(models: Path, checkpoints: Path, loras: Path, device: str, cache: Path, **extra: Any):
    from pico.config import Settings
    from pico.pipelines.engine import Engine

    return Engine(Settings(models_dir=models, checkpoint_dir=(checkpoints,), lora_dir=(loras,), device=device,
                           cache_dir=cache, max_models=2, **extra))


def request(family: str, steps: int, size: int, model: str | None = None, loras: list[tuple[str, float]] = ()):
    from pico.catalog.pipelines import pipeline_info

    body: dict[str, Any] = {"Phrase": "ginger cat", "Steps": steps, "Seed": 1, "Width": size, "Height": size,
                            "Precision": "half", "Loras": [{"Name": n, "Weight": w} for n, w in loras]}
    if model:
        body["Model"] = model
    return pipeline_info(FAMILIES[family][1]).request_type.parse(body, 4096 * 4096)


def timed(call) -> float:
    import torch

    started = time.perf_counter()
    call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def run(models: Path, family: str, device: str, rank: int, steps: int, size: int, repeat: int,
        compile_mode: str | None, scratch: Path) -> dict[str, Any]:
    """Every row for one family."""
    checkpoints, loras, names = prepare(models, family, rank, scratch)
    model_id, _ = FAMILIES[family]
    rows: dict[str, Any] = {}
    cache = scratch / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # a cold hash cache: the first request pays for hashing, as a user's does

    warm_up = engine_for(models, checkpoints, loras, device, cache)  # imports, kernels, the page cache: not measured
    warm_up.generate(request(family, steps, size))
    warm_up.close()
    del warm_up
    gc.collect()
    plain = engine_for(models, checkpoints, loras, device, cache)
    rows["folder first request (load + generate) s"] = timed(lambda: plain.generate(request(family, steps, size)))
    plain.close()
    del plain
    gc.collect()

    engine = engine_for(models, checkpoints, loras, device, cache)
    ckpt = f"bench-{family}"
    rows["checkpoint first request (detect + load + hash + generate) s"] = timed(
        lambda: engine.generate(request(family, steps, size, ckpt)))
    generations = [timed(lambda: engine.generate(request(family, steps, size, ckpt))) for _ in range(repeat)]
    rows["warm generation, no LoRA"] = summary(generations)
    warm = rows["warm generation, no LoRA"]["p50_ms"] / 1000

    first = timed(lambda: engine.generate(request(family, steps, size, ckpt, [(names[0], 0.8)])))
    rows["first request with a new LoRA (load + generate) s"] = first
    rows["LoRA first load (s, over a warm generation)"] = first - warm
    engine.generate(request(family, steps, size, ckpt, [(names[1], 0.8)]))  # both cached now
    model = next(entry.value for entry in engine.cache.entries() if entry.key.model_id.startswith(ckpt))
    plan_a = engine.plan(request(family, steps, size, ckpt, [(names[0], 0.8)]), FAMILIES[family][1]).loras
    plan_b = engine.plan(request(family, steps, size, ckpt, [(names[1], 0.6)]), FAMILIES[family][1]).loras
    plan_ab = engine.plan(request(family, steps, size, ckpt, [(names[0], 0.5), (names[1], 0.5)]),
                          FAMILIES[family][1]).loras
    switches = []
    for _ in range(max(repeat, 5)):
        for chosen in (plan_a, plan_b, plan_ab, ()):
            switches.append(timed(lambda chosen=chosen: model.loras.activate(chosen)))
    rows["switch LoRA set, cached adapters (A, B, A+B, none)"] = summary(switches)
    rows["switch as % of a warm generation (p95)"] = 100 * rows["switch LoRA set, cached adapters (A, B, A+B, none)"][
        "p95_ms"] / 1000 / warm
    alternating = [timed(lambda i=i: engine.generate(request(family, steps, size, ckpt, [(names[i % 2], 0.8)])))
                   for i in range(repeat)]
    rows["generation alternating LoRA A / B"] = summary(alternating)
    engine.close()
    del engine, model
    gc.collect()

    if compile_mode:
        rows.update(hot_swap(models, checkpoints, loras, names, family, device, steps, size, compile_mode, cache))
    return rows


def hot_swap(models: Path, checkpoints: Path, loras: Path, names: list[str], family: str, device: str, steps: int,
             size: int, compile_mode: str, cache: Path) -> dict[str, Any]:
    """--compile: the first LoRA compiles once; new LoRAs and weights swap in without compiling."""
    from torch._dynamo.utils import counters

    engine = engine_for(models, checkpoints, loras, device, cache, compile=True, compile_mode=compile_mode,
                        max_lora_rank=64)
    ckpt = f"bench-{family}"
    rows: dict[str, Any] = {}

    def graphs() -> int:
        return int(counters["stats"]["unique_graphs"])

    start = graphs()
    rows["compile: first request (compiles) s"] = timed(lambda: engine.generate(request(family, steps, size, ckpt)))
    rows["compile: warm generation s"] = timed(lambda: engine.generate(request(family, steps, size, ckpt)))
    before = graphs()
    rows["compile: first LoRA (new slot: compiles once) s"] = timed(
        lambda: engine.generate(request(family, steps, size, ckpt, [(names[0], 0.8)])))
    after_first = graphs()
    swaps = []
    for index in (1, 2, 0, 1):
        swaps.append(timed(lambda index=index: engine.generate(request(family, steps, size, ckpt,
                                                                       [(names[index], 0.7)]))))
    rows["compile: generation with a hot-swapped LoRA"] = summary(swaps)
    rows["compile: graphs compiled (base, first LoRA, 4 swaps)"] = [before - start, after_first - before,
                                                                   graphs() - after_first]
    engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="a models folder with the families' Diffusers models "
                        "(default: the tiny ones)")
    parser.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compile-mode", help="also measure hot-swap with --compile in this mode (e.g. default)")
    parser.add_argument("--scratch", type=Path, help="where the checkpoint and LoRA files go (default: a temp dir)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)  # the tiny models draw fastest on one thread; shared machines stay fair
    models = args.models or tiny_models()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="pico-bench-ckpt-"))
    families = list(FAMILIES) if args.family == "all" else [args.family]
    results = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()}, "rows": {}}
    for family in families:
        results["rows"][family] = run(models, family, args.device, args.rank, args.steps, args.size, args.repeat,
                                      args.compile_mode, scratch / family)
    lines = []
    for family, rows in results["rows"].items():
        for name, value in rows.items():
            if isinstance(value, dict):
                lines.append([family, name, f"{value['p50_ms']:.1f} ms", f"{value['p95_ms']:.1f} ms"])
            elif isinstance(value, list):
                lines.append([family, name, ", ".join(map(str, value)), ""])
            else:
                lines.append([family, name, f"{value:.3f}", ""])
    title = (f"Checkpoints and LoRAs ({args.device}, {args.size}px, {args.steps} steps, LoRA rank {args.rank})")
    write_results(f"checkpoints-loras-{args.device.split(':')[0]}", results,
                  f"### {title}\n\n" + table(["Family", "Measure", "p50 / value", "p95"], lines), args.out)


if __name__ == "__main__":
    main()
