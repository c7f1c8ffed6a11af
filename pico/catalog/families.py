"""Model families: what kind of weights a model has, and the defaults that give good images without tuning.

One table, :data:`FAMILY_TABLE`, holds each family's defaults: its default model and text-to-image
route, native size, steps, guidance, T5 sequence length, scheduler kind and precision on CUDA.
Requests, routes, the README's families table and its test all read them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD35_LARGE_MODEL,
    SD35_LARGE_TURBO_MODEL,
    SD35_MEDIUM_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SDXL_MODEL,
    canonical,
)

FLOW = "flow matching"  # SD 3.x, FLUX.1: rectified-flow transformers
DIFFUSION = "DDPM-style"  # SD 1/2/XL: noise-prediction UNets


@dataclass(frozen=True)
class Family:
    """One model family's defaults."""

    id: str  # sd1, sd2, sdxl, sd3, flux-schnell, flux-dev
    label: str  # what people call it
    default_model: str
    route: str  # its text-to-image route under /api/v1
    native_size: int  # pixels per side it was trained at
    steps: int  # denoising steps when a request gives neither Steps nor Quality
    guidance: float  # GuidanceScale by default (FLUX.1 dev: the distilled guidance it embeds)
    distilled_guidance: bool  # guidance is an input of the model (one pass), not classifier-free (two passes)
    max_sequence_length: int | None  # T5 tokens read by default; None: no T5 encoder
    scheduler: str  # FLOW or DIFFUSION
    cuda_precision: str  # the Precision a request of this family gets on CUDA by default

    @property
    def flow(self) -> bool:
        """True for flow-matching families (SD 3.x, FLUX.1), whose samplers and encoders differ."""
        return self.scheduler == FLOW


FAMILY_TABLE: dict[str, Family] = {f.id: f for f in (
    Family("sd1", "Stable Diffusion 1.x", SD1_MODEL, "stable-diffusion", 512, 50, 7.5, False, None, DIFFUSION,
           "half"),
    Family("sd2", "Stable Diffusion 2.x", SD2_MODEL, "stable-diffusion-2", 768, 50, 7.5, False, None, DIFFUSION,
           "half"),
    Family("sdxl", "Stable Diffusion XL", SDXL_MODEL, "stable-diffusion-xl", 1024, 50, 5.0, False, None, DIFFUSION,
           "half"),
    Family("sd3", "Stable Diffusion 3.x", SD35_MEDIUM_MODEL, "stable-diffusion-3", 1024, 40, 4.5, False, 512, FLOW,
           "bfloat16"),
    Family("flux-schnell", "FLUX.1 schnell", FLUX_SCHNELL_MODEL, "flux", 1024, 4, 0.0, False, 256, FLOW,
           "bfloat16"),
    Family("flux-dev", "FLUX.1 dev", FLUX_DEV_MODEL, "flux", 1024, 28, 3.5, True, 512, FLOW, "bfloat16"),
)}

FAMILIES = tuple(FAMILY_TABLE)

# Models whose card recommends other settings than their family's (steps, guidance).
MODEL_DEFAULTS: dict[str, dict] = {
    SD35_LARGE_MODEL: {"steps": 28, "guidance": 3.5},
    SD35_LARGE_TURBO_MODEL: {"steps": 4, "guidance": 0.0},
}

_DEFAULT_FAMILY = {f.default_model: f.id for f in FAMILY_TABLE.values()} | {
    SD35_LARGE_MODEL: "sd3", SD35_LARGE_TURBO_MODEL: "sd3",
}


def base_family(family: str) -> str:
    """The table's family for a checkpoint family id: sdxl-refiner -> sdxl, sd1-inpaint -> sd1."""
    return family.removesuffix("-inpaint").removesuffix("-refiner")


def guess_family(model: str) -> str | None:
    """The family of a model id from the table or the usual words in its name; None when nothing tells."""
    known = _DEFAULT_FAMILY.get(canonical(model)) or _DEFAULT_FAMILY.get(model)
    if known:
        return known
    name = model.lower()
    if "flux" in name:
        return "flux-schnell" if "schnell" in name else "flux-dev"
    if re.search(r"stable-diffusion-3|(^|[-_/.])sd-?3", name):
        return "sd3"
    if re.search(r"(^|[-_/.])(sd)?xl([-_/.]|$)", name):
        return "sdxl"
    if re.search(r"stable-diffusion-2|(^|[-_/])sd-?2", name):
        return "sd2"
    return None


def family_of(model: str) -> str:
    """The family of a model id: known ids from the table, others by the usual words in their names, else sd1."""
    return guess_family(model) or "sd1"


def defaults_for(model: str, route_family: str | None = None) -> Family:
    """The defaults a request for ``model`` gets: its family's, with its card's steps and guidance where known.

    ``route_family`` is the family a route serves when the name does not tell (a FLUX fine-tune on the
    flux route is FLUX.1 dev's, the family most fine-tunes start from).
    """
    family = guess_family(model)
    if route_family is not None and (family is None or FAMILY_TABLE[family].route != FAMILY_TABLE[route_family].route):
        family = route_family
    defaults = FAMILY_TABLE[base_family(family or "sd1")]
    override = MODEL_DEFAULTS.get(canonical(model))
    return replace(defaults, **override) if override else defaults


def families_table() -> str:
    """The README's families table (Markdown), made from the table above; a test keeps the README in step."""
    rows = ["| Family | Route | Default model | Native size | Steps | GuidanceScale | MaxSequenceLength | "
            "Scheduler | Precision (CUDA) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in FAMILY_TABLE.values():
        guidance = f"{f.guidance:g} (distilled)" if f.distilled_guidance else ("none" if f.guidance == 0 else
                                                                              f"{f.guidance:g}")
        size = f"{f.native_size}²"
        precision = {"half": "float16", "bfloat16": "bfloat16"}[f.cuda_precision]
        rows.append(f"| {f.label} (`{f.id}`) | `{f.route}` | `{f.default_model}` | {size} | {f.steps} | {guidance} | "
                    f"{f.max_sequence_length or '—'} | {f.scheduler} | {precision} |")
    for model, override in MODEL_DEFAULTS.items():
        family = FAMILY_TABLE[_DEFAULT_FAMILY[model]]
        guidance = "none" if override["guidance"] == 0 else f"{override['guidance']:g}"
        rows.append(f"| ↳ `{model}` | `{family.route}` | | | {override['steps']} | {guidance} | | | |")
    return "\n".join(rows)
