"""Warm versus the original approach: what reloading the pipeline on every request costs.

The original PICO called ``from_pretrained`` (and ``enable_model_cpu_offload`` on a GPU) for
every request. This measures a request done that way against PICO's warm engine, same model,
same request, same machine.

    python benchmarks/warm_vs_original.py [--repeat 10] [--steps 20] [--models-dir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary, table, time_calls, tiny_models, write_results  # noqa: E402

MODELS = {"sd15": ("runwayml/stable-diffusion-v1-5", "StableDiffusionPipeline"),
          "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "StableDiffusionXLPipeline")}


def original(folder: Path, pipeline_class: str, steps: int, size: int | None, repeat: int) -> list[float]:
    """Seconds per request as the original did it: load from disk, place (offload on CUDA), generate."""
    import diffusers
    import torch

    cuda = torch.cuda.is_available()
    cls = getattr(diffusers, pipeline_class)
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        pipe = cls.from_pretrained(folder, dtype=torch.float16 if cuda else torch.float32, use_safetensors=True,
                                   **({"safety_checker": None} if "XL" not in pipeline_class else {}))
        if cuda:
            pipe.enable_model_cpu_offload()
        pipe.set_progress_bar_config(disable=True)
        pipe("ginger cat", num_inference_steps=steps, height=size, width=size)
        timings.append(time.perf_counter() - started)
        del pipe
    return timings


def warm(models_dir: Path, model: str, steps: int, size: int | None, repeat: int) -> list[float]:
    """Seconds per request through PICO's engine once the model is loaded."""
    from pico.config import Settings
    from pico.pipelines.engine import Engine
    from pico.catalog.pipelines import text_to_image_pipeline

    engine = Engine(Settings(models_dir=models_dir))
    body = {"Phrase": "ginger cat", "Steps": steps, **({"Width": size, "Height": size} if size else {})}
    request = text_to_image_pipeline(model).request_type.parse({**body, "Model": model}, 4096 * 4096)
    timings = time_calls(lambda: engine.generate(request), repeat)
    engine.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="image side in pixels (default: the model's own)")
    parser.add_argument("--models-dir", type=Path, help="default: the tiny demo models")
    parser.add_argument("--model", choices=list(MODELS), action="append", help="repeatable; default: both")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    models_dir = args.models_dir or tiny_models()
    results = {"machine": machine(), "models_dir": str(models_dir), "steps": args.steps, "rows": []}
    rows = []
    for name in args.model or list(MODELS):
        model, pipeline_class = MODELS[name]
        slow = summary(original(models_dir / model, pipeline_class, args.steps, args.size, args.repeat))
        fast = summary(warm(models_dir, model, args.steps, args.size, args.repeat))
        ratio = slow["p50_ms"] / fast["p50_ms"]
        results["rows"].append({"model": name, "original": slow, "warm": fast, "ratio": ratio})
        rows.append([name, slow["p50_ms"], fast["p50_ms"], f"{ratio:.1f}x"])
    markdown = table([f"model ({'tiny' if not args.models_dir else models_dir.name}, {args.steps} steps)",
                      "original p50 ms (load + offload + generate)", "PICO warm p50 ms", "warm is faster by"], rows)
    write_results("warm_vs_original", results, markdown, args.out)


if __name__ == "__main__":
    main()
