"""What per-image inpainting noise costs: one VAE encode per image instead of one per request.

PICO gives each image of an inpainting request its own copy of the input (so image i depends on
Seed+i alone); Diffusers then encodes the input and the masked input once per image. This measures,
at SD 1.5 inpainting's real size (random weights from the published configs), one VAE encode of a
512² image against one denoising step (UNet, 9 channels, classifier-free guidance), and gives the
added time of a request of Total images as a share of its generation.

    python benchmarks/inpaint_copies.py [--steps 25] [--total 4] [--repeat 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, table, time_calls, write_results  # noqa: E402
from benchmarks.fullsize import SD15_UNET, VAE  # noqa: E402


def timed(call, repeat: int) -> float:
    """Median seconds of ``call()`` over ``repeat`` runs, after one warm-up."""
    return statistics.median(time_calls(call, repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--total", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    dtype = torch.float16 if args.device == "cuda" else torch.float32
    vae = AutoencoderKL(**VAE, sample_size=512).to(args.device, dtype).eval()
    unet = UNet2DConditionModel(**dict(SD15_UNET, in_channels=9)).to(args.device, dtype).eval()
    image = torch.randn(1, 3, 512, 512, device=args.device, dtype=dtype)
    latents = torch.randn(2, 9, 64, 64, device=args.device, dtype=dtype)
    text = torch.randn(2, 77, 768, device=args.device, dtype=dtype)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        encode = timed(lambda: (vae.encode(image).latent_dist.sample(), sync()), args.repeat)
        step = timed(lambda: (unet(latents, 500, encoder_hidden_states=text).sample, sync()), args.repeat)
    # Diffusers encodes two inputs per copy (the image, and the image with the mask cut out).
    added = 2 * (args.total - 1) * encode
    generation = args.total * args.steps * step  # batched steps cost about Total single ones
    share = added / generation
    results = {"machine": machine(), "device": args.device, "encode_ms": encode * 1000, "step_ms": step * 1000,
               "steps": args.steps, "total": args.total, "added_ms": added * 1000, "share": share}
    markdown = table(["device", "VAE encode 512² ms", "step (CFG) ms", f"added, Total {args.total} ms",
                      f"share of a {args.steps}-step request"],
                     [[args.device, encode * 1000, step * 1000, added * 1000, f"{share:.1%}"]])
    write_results("inpaint_copies", results, markdown, args.out)
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
