"""What a generation gives back, whichever pipeline made it: images, their metadata, notes for the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from PIL import Image

StepCallback = Callable[[int, int], "bool | None"]
"""Called after each denoising step with (steps done, steps in all).

Returning True ends denoising early and keeps the images as they are (A1111's interrupt);
raising aborts the generation (a cancel).
"""

PreviewCallback = Callable[[int, Callable[[], "list[Image.Image]"]], None]
"""Called after each denoising step with (steps done, render): ``render()`` makes small previews of the
images as they are now, one per image of the call; it costs a little, so call it only when a preview is wanted.
"""


@dataclass
class Generation:
    """What a runner returns: the images, one metadata dict per image, and notes for the user."""

    name: str
    images: list["Image.Image"]
    metadata: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0
