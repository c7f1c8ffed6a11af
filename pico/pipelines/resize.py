"""AUTOMATIC1111's image resizing, its weightless upscalers and its tiles, in Pillow (torch-free).

Ports of ``modules/images.py`` (``resize_image``, ``split_grid``, ``combine_grid``) and
``modules/upscaler.py`` (``Upscaler.upscale`` with Lanczos, Nearest and None), so sizes and
pixels come out as A1111's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST
RESIZE_MODES = ("just resize", "crop and resize", "resize and fill")  # A1111's resize_mode 0, 1, 2


def upscale(image: Image.Image, upscaler: str, scale: float) -> Image.Image:
    """A1111's ``Upscaler.upscale``: resample by ``scale`` (up to 3 times), then Lanczos to sides floored to 8."""
    dest_w, dest_h = int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)
    resample = NEAREST if upscaler == "Nearest" else LANCZOS
    for _ in range(3):
        if upscaler == "None":
            break
        shape = image.size
        image = image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
        if shape == image.size or (image.width >= dest_w and image.height >= dest_h):
            break
    if image.size != (dest_w, dest_h):
        image = image.resize((dest_w, dest_h), resample=LANCZOS)
    return image


def _resize(image: Image.Image, width: int, height: int, upscaler: str) -> Image.Image:
    if upscaler == "None" or image.mode == "L":
        return image.resize((width, height), resample=LANCZOS)
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = upscale(image, upscaler, scale)
    if image.size != (width, height):
        image = image.resize((width, height), resample=LANCZOS)
    return image


def resize_image(mode: int, image: Image.Image, width: int, height: int, upscaler: str = "None") -> Image.Image:
    """A1111's ``resize_image``: 0 just resize, 1 crop and resize (centred), 2 resize and fill (edges stretched)."""
    if mode == 0:
        return _resize(image, width, height, upscaler)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
    else:
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = _resize(image, src_w, src_h, upscaler)
    result = Image.new(image.mode if image.mode == "L" else "RGB", (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2 and ratio < src_ratio:
        fill = height // 2 - src_h // 2
        if fill > 0:
            result.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                         box=(0, fill + src_h))
    elif mode == 2 and ratio > src_ratio:
        fill = width // 2 - src_w // 2
        if fill > 0:
            result.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                         box=(fill + src_w, 0))
    return result


@dataclass
class Grid:
    """An image cut into overlapping tiles (A1111's ``split_grid``): rows of (y, height, [[x, width, tile]])."""

    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int
    tiles: list[list] = field(default_factory=list)

    def images(self) -> list[Image.Image]:
        """The tiles, row by row."""
        return [tile for _, _, row in self.tiles for _, _, tile in row]

    def replace(self, images: list[Image.Image]) -> None:
        """Put redrawn tiles back, in the order :meth:`images` gave them."""
        it = iter(images)
        for _, _, row in self.tiles:
            for cell in row:
                cell[2] = next(it)


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """Cut ``image`` into tiles of tile_w x tile_h overlapping by ``overlap`` pixels, as A1111 does."""
    w, h = image.size
    cols = max(1, math.ceil((w - overlap) / (tile_w - overlap)))
    rows = max(1, math.ceil((h - overlap) / (tile_h - overlap)))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    grid = Grid(tile_w, tile_h, w, h, overlap)
    for row in range(rows):
        y = int(row * dy)
        if y + tile_h >= h:
            y = h - tile_h
        cells = []
        for col in range(cols):
            x = int(col * dx)
            if x + tile_w >= w:
                x = w - tile_w
            cells.append([x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))])
        grid.tiles.append([y, tile_h, cells])
    return grid


def combine_grid(grid: Grid) -> Image.Image:
    """Join the tiles again, blending each overlap with a linear ramp, as A1111 does."""
    def ramp(values: np.ndarray) -> Image.Image:
        return Image.fromarray((values * 255 / grid.overlap).astype(np.uint8), "L")

    overlap = grid.overlap
    if overlap == 0:  # nothing to blend (A1111 would divide by zero here)
        combined = Image.new("RGB", (grid.image_w, grid.image_h))
        for y, _, row in grid.tiles:
            for x, _, tile in row:
                combined.paste(tile, (x, y))
        return combined
    mask_w = ramp(np.arange(overlap, dtype=np.float32).reshape((1, overlap)).repeat(grid.tile_h, axis=0))
    mask_h = ramp(np.arange(overlap, dtype=np.float32).reshape((overlap, 1)).repeat(grid.image_w, axis=1))
    combined = Image.new("RGB", (grid.image_w, grid.image_h))
    for y, h, row in grid.tiles:
        line = Image.new("RGB", (grid.image_w, h))
        for x, w, tile in row:
            if x == 0:
                line.paste(tile, (0, 0))
                continue
            line.paste(tile.crop((0, 0, overlap, h)), (x, 0), mask=mask_w)
            line.paste(tile.crop((overlap, 0, w, h)), (x + overlap, 0))
        if y == 0:
            combined.paste(line, (0, 0))
            continue
        combined.paste(line.crop((0, 0, line.width, overlap)), (0, y), mask=mask_h)
        combined.paste(line.crop((0, overlap, line.width, h)), (0, y + overlap))
    return combined
