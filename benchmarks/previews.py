"""What live previews cost a generation: rendering them from the latents, and encoding them for a stream.

Three measurements, on the CPU or (``--device cuda``) a GPU:

1. ``render``: pico.pipelines.previews.latents_to_images at the latent sizes of real images
   (SD 1.5 at 512x512: 4x64x64; SDXL at 1024x1024: 4x128x128; a batch of 4), the cost the
   generation thread pays at each step a preview is wanted (it waits for the device: ``.cpu()``);
2. ``loop``: a stand-in denoising loop of matrix products lasting about one real step (18 ms, SD
   1.5 on an H100; 67 ms, SDXL), with and without a preview after every step, so the device
   synchronisation a preview forces is counted too (on a GPU);
3. ``tiny``: the tiny SD 1 pipeline through Engine.generate, 50 steps, without previews and with
   one after every step (CPU only; its steps are tiny, so this is the worst case in percent);
4. ``encode``: the JPEG a preview event carries (on the stream's own thread, not the generation's).

    python benchmarks/previews.py [--device cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Published denoising rates (steps/s, fp16, one H100; stable-fast's README): a step's length on a GPU.
GPU_STEP_SECONDS = {"SD 1.5 512x512": 1 / 54.5, "SDXL 1024x1024": 1 / 14.9}
SHAPES = {"SD 1.5 512x512": (1, 4, 64, 64), "SDXL 1024x1024": (1, 4, 128, 128),
          "SD 1.5 512x512, 4 images": (4, 4, 64, 64)}


class _Pipe:
    """Just what latents_to_images asks of a pipeline: its class name and whether it has a second encoder."""

    text_encoder_2 = None


def median_seconds(call: Callable[[], Any], sync: Callable[[], None], repeat: int, warm_up: int = 20) -> float:
    for _ in range(warm_up):
        call()
    sync()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        sync()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def render(device: str, repeat: int) -> dict[str, float]:
    import torch

    from pico.pipelines.previews import latents_to_images

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out = {}
    for name, shape in SHAPES.items():
        latents = torch.randn(shape, device=device, dtype=torch.float16 if device != "cpu" else torch.float32)
        out[name] = median_seconds(lambda: latents_to_images(_Pipe(), latents), sync, repeat)
    return out


def loop(device: str, steps: int) -> dict[str, dict[str, float]]:
    """A loop of matrix products sized to one real step, with and without a preview after each step."""
    import torch

    from pico.pipelines.previews import latents_to_images

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    dtype = torch.float16 if device != "cpu" else torch.float32
    weight = torch.randn(4096, 4096, device=device, dtype=dtype) / 64
    x = torch.randn(4096, 4096, device=device, dtype=dtype)
    one = median_seconds(lambda: x @ weight, sync, 10)
    results = {}
    for name, step_seconds in GPU_STEP_SECONDS.items():
        products = max(1, round(step_seconds / one))
        latents = torch.randn(SHAPES[name], device=device, dtype=dtype)

        def run(preview: bool) -> float:
            y = x
            sync()
            started = time.perf_counter()
            for _ in range(steps):
                for _ in range(products):
                    y = torch.tanh(y @ weight)
                latents.add_(y[:1, :1].mean() * 0)  # the latents depend on the step, as in a real loop
                if preview:
                    latents_to_images(_Pipe(), latents)
            sync()
            return (time.perf_counter() - started) / steps

        run(True)
        plain = statistics.median(run(False) for _ in range(3))
        with_previews = statistics.median(run(True) for _ in range(3))
        results[name] = {"step_seconds": plain, "step_with_preview_seconds": with_previews,
                         "overhead_percent": 100 * (with_previews - plain) / plain}
    return results


def tiny(repeat: int) -> dict[str, float]:
    from pico.config import Settings
    from pico.pipelines.engine import Engine
    from pico.pipelines.tiny import write_tiny_models
    from pico.schemas.requests import StableDiffusionRequest

    models = Path("/tmp/pico-bench-tiny")
    if not (models / "runwayml").is_dir():
        write_tiny_models(models)
    engine = Engine(Settings(models_dir=models, device="cpu"))
    engine.leave_a_core_free()
    request = StableDiffusionRequest.parse({"Phrase": "cat", "Steps": 50, "Seed": 1}, 2048 * 2048)
    calls = {"plain": lambda: engine.generate(request, on_step=lambda d, t: None),
             "previews": lambda: engine.generate(request, on_step=lambda d, t: None,
                                                 on_preview=lambda done, images: images())}
    for call in calls.values():
        call()
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):  # interleaved, so a busy machine slows both alike
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - started)
    engine.close()
    plain, every = statistics.median(timings["plain"]), statistics.median(timings["previews"])
    return {"generation_seconds": plain, "with_preview_every_step_seconds": every,
            "overhead_percent": 100 * (every - plain) / plain, "step_seconds": plain / 50}


def encode(repeat: int) -> dict[str, float]:
    from PIL import Image

    from pico.server.events.follow import jpeg_base64

    out = {}
    for name, side in (("64x64 preview (512x512 image)", 64), ("128x128 preview (1024x1024 image)", 128)):
        image = Image.effect_noise((side, side), 64).convert("RGB")
        out[name] = median_seconds(lambda: jpeg_base64(image), lambda: None, repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    results: dict[str, Any] = {"device": args.device, "torch_threads": torch.get_num_threads(),
                               "render_seconds": render(args.device, args.repeat),
                               "encode_seconds": encode(args.repeat)}
    if args.device.startswith("cuda"):
        results["loop"] = loop(args.device, 20)
        results["gpu"] = torch.cuda.get_device_name()
    else:
        results["tiny"] = tiny(max(5, args.repeat // 5))
    for name, seconds in results["render_seconds"].items():
        for model, step in GPU_STEP_SECONDS.items():
            if name.startswith(model):
                results.setdefault("render_vs_published_gpu_step_percent", {})[name] = 100 * seconds / step
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"previews-{args.device.split(':')[0]}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
