"""Model families: what kind of weights a model has, and what follows from it."""

from __future__ import annotations

import re

from pico.catalog.models import SD1_MODEL, SD2_MODEL, SDXL_MODEL, canonical

FAMILIES = ("sd1", "sd2", "sdxl")

_DEFAULT_FAMILY = {SD1_MODEL: "sd1", SD2_MODEL: "sd2", SDXL_MODEL: "sdxl"}


def family_of(model: str) -> str:
    """The family of a model id: known ids from the table, others by the usual words in their names."""
    known = _DEFAULT_FAMILY.get(canonical(model)) or _DEFAULT_FAMILY.get(model)
    if known:
        return known
    name = model.lower()
    if re.search(r"(^|[-_/.])(sd)?xl([-_/.]|$)", name):
        return "sdxl"
    if re.search(r"stable-diffusion-2|(^|[-_/])sd-?2", name):
        return "sd2"
    return "sd1"
