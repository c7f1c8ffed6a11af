"""The upscalers PICO has, by AUTOMATIC1111's names: latent modes for the hires fix, image upscalers.

Torch-free: routes, requests and the CLI read the names here; ``pico.pipelines.resize`` and
``pico.pipelines.hires`` do the work.
"""

from __future__ import annotations

# A1111's latent upscale modes (modules/shared_items.py): name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# A1111's upscalers that need no weights; "None" is a plain Lanczos resize, as in A1111.
IMAGE_UPSCALERS = ("None", "Lanczos", "Nearest")
SD_X4 = "SD x4"  # Stable Diffusion's x4 upscaler model (stabilityai/stable-diffusion-x4-upscaler), when present

HIRES_UPSCALERS = (*LATENT_UPSCALE_MODES, *IMAGE_UPSCALERS)
UPSCALERS = ("Lanczos", "Nearest", SD_X4)  # the upscale route's Upscaler field
