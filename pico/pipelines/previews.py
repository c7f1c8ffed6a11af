"""Previews of images while they form: the latents mapped linearly to RGB, without the VAE.

A1111 and ComfyUI show the same "approximate" previews: each latent channel contributes a fixed
colour (factors fitted per family), so a preview of a 512² image is a 64² image made with one
small matrix product — a tiny fraction of a denoising step, on any device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

# Latent channels -> (RGB factors per channel, RGB bias), as ComfyUI's latent formats fit them.
FACTORS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
    "sd3": ([[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
             [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
             [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
             [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
             [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
             [-0.1448, -0.1463, -0.1189]], [0.2394, 0.2135, 0.1925]),
    "flux": ([[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
              [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
              [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
              [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
              [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
              [-0.1262, -0.0982, -0.0778]], [-0.0329, -0.0718, -0.0851]),
}


def preview_format(pipe: Any, channels: int) -> str:
    """Which factors fit a pipeline's latents: by family where it is known, else by channel count."""
    name = type(pipe).__name__
    if "Flux" in name:
        return "flux"
    if "StableDiffusion3" in name:
        return "sd3"
    if getattr(pipe, "text_encoder_2", None) is not None and channels == 4:
        return "sdxl"
    return "sd" if channels == 4 else "sd3"


def latents_to_images(pipe: Any, latents: Any, size: tuple[int, int] | None = None) -> list["Image.Image"]:
    """One small RGB preview per image of a batch of latents (B, C, h, w); FLUX's packed (B, n, C·4) too."""
    import torch
    from PIL import Image

    with torch.no_grad():
        latents = latents.detach()
        if latents.ndim == 3:  # FLUX packs 2x2 latent patches into tokens: unpack to (B, C, h, w)
            latents = _unpack(latents, size)
        factors, bias = FACTORS[preview_format(pipe, latents.shape[1])]
        weight = torch.tensor(factors, dtype=torch.float32, device=latents.device)
        if weight.shape[0] != latents.shape[1]:
            weight = torch.eye(latents.shape[1], 3, device=latents.device)  # an unknown layout: its first channels
        rgb = torch.einsum("bchw,cr->bhwr", latents.float(), weight) + torch.tensor(bias, device=latents.device)
        pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(image, "RGB") for image in pixels]


def _unpack(latents: Any, size: tuple[int, int] | None) -> Any:
    """FLUX's (B, h/2·w/2, C·4) tokens back to (B, C, h, w) latents, for an image of ``size`` (else square)."""
    import math

    batch, tokens, packed = latents.shape
    channels = packed // 4
    if size is not None:
        height, width = size[1] // 16, size[0] // 16
    else:
        height = width = int(math.isqrt(tokens))
    latents = latents.view(batch, height, width, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, channels, height * 2, width * 2)
