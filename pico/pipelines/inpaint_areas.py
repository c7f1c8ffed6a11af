"""AUTOMATIC1111's inpainting around the pipeline call: mask blur, "only masked", fill, and the paste back.

Ports of A1111 1.10 ``StableDiffusionProcessingImg2Img.init`` and ``apply_overlay``
(``modules/processing.py``) and ``modules/masking.py``. Diffusers binarizes the mask it is
given (as A1111 rounds its latent mask), so the blur acts where A1111's does: on the
overlay through which the input's pixels are pasted back over the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from pico.pipelines.resize import resize_image


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's mask blur: OpenCV's Gaussian (kernel 2*int(2.5*sigma+0.5)+1, mirrored edges) across, then down.

    OpenCV rounds through fixed point on 8-bit images; this rounds once from float, so a value may
    differ from A1111's by one level.
    """
    from scipy.ndimage import convolve1d

    values = np.asarray(mask.convert("L"), dtype=np.float64)
    for sigma, axis in ((blur_x, 1), (blur_y, 0)):
        if sigma > 0:
            half = int(2.5 * sigma + 0.5)
            offsets = np.arange(-half, half + 1, dtype=np.float64)
            kernel = np.exp(-(offsets ** 2) / (2 * sigma * sigma))
            values = np.clip(np.rint(convolve1d(values, kernel / kernel.sum(), axis=axis, mode="mirror")), 0, 255)
    return Image.fromarray(values.astype(np.uint8), "L")


def crop_region(mask: Image.Image, pad: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box around the mask's white, padded, then widened to width:height (A1111's get_crop_region_v2 and
    expand_crop_region); None for a black mask."""
    box = mask.getbbox()
    if not box:
        return None
    x1, y1, x2, y2 = box
    if pad:
        x1, y1, x2, y2 = max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _widen(y1, y2, int((x2 - x1) / (width / height) - (y2 - y1)), mask.height)
    else:
        x1, x2 = _widen(x1, x2, int((y2 - y1) * (width / height) - (x2 - x1)), mask.width)
    return x1, y1, x2, y2


def _widen(start: int, end: int, diff: int, limit: int) -> tuple[int, int]:
    start -= diff // 2
    end += diff - diff // 2
    if end >= limit:
        start, end = start - (end - limit), limit
    if start < 0:
        start, end = 0, end - start
    return start, min(end, limit)


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill" masked content: the masked area painted with ever less blurred colours from around it."""
    result = Image.new("RGBA", image.size)
    masked = Image.new("RGBa", image.size)
    masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


@dataclass
class InpaintPlan:
    """What the pipeline draws (image and mask at width x height) and how its result goes back over the input."""

    image: Image.Image
    mask: Image.Image
    overlay: Image.Image | None  # the input where it is kept, transparent where repainted
    paste_to: tuple[int, int, int, int] | None  # "only masked": where the drawn area goes (x, y, w, h)
    notes: list[str]

    def finish(self, result: Image.Image) -> Image.Image:
        """The drawn image put back into the input: uncropped, then the input's pixels composited over it."""
        if self.paste_to is not None:
            x, y, w, h = self.paste_to
            canvas = Image.new("RGBA", self.overlay.size)
            canvas.paste(resize_image(1, result, w, h), (x, y))
            result = canvas
        if self.overlay is None:
            return result
        result = result.convert("RGBA")
        result.alpha_composite(self.overlay)
        return result.convert("RGB")


def plan_inpaint(image: Image.Image, mask: Image.Image, size: tuple[int, int], *, blur: int = 0,
                 masked_area: bool = False, padding: int = 0, fill_masked: bool = False,
                 keep_unmasked: bool = False) -> InpaintPlan:
    """A1111's preparation of an inpainting call; ``mask`` is white where to repaint, the size of ``image``."""
    width, height = size
    if not (blur or masked_area or fill_masked or keep_unmasked):  # Diffusers' own inpainting, inputs untouched
        return InpaintPlan(image, mask, None, None, [])
    notes = []
    mask = blur_mask(mask, blur, blur) if blur else mask.convert("L")
    region = crop_region(mask, padding, width, height) if masked_area else None
    if masked_area and region is None:
        notes.append("InpaintArea 'masked' needs a mask with some white; the whole picture was drawn.")
    if region is not None:
        x1, y1, x2, y2 = region
        overlay_mask = mask
        drawn_mask = resize_image(2, mask.crop(region), width, height)
        drawn = resize_image(2, image.crop(region), width, height)
        overlay_image, paste_to = image, (x1, y1, x2 - x1, y2 - y1)
    else:
        drawn_mask = mask.resize(size, Image.Resampling.LANCZOS) if mask.size != size else mask
        overlay_mask = Image.fromarray(np.clip(np.asarray(drawn_mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8))
        drawn = image.resize(size, Image.Resampling.LANCZOS) if image.size != size else image
        overlay_image, paste_to = drawn, None
    overlay = None
    if keep_unmasked or paste_to is not None:
        overlay = Image.new("RGBa", overlay_image.size)
        overlay.paste(overlay_image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask))
        overlay = overlay.convert("RGBA")
    if fill_masked:
        drawn = fill(drawn, drawn_mask)
    return InpaintPlan(drawn, drawn_mask, overlay, paste_to, notes)
