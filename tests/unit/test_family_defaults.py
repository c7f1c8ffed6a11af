"""The per-family defaults table: one source for requests, routes and the README's families table."""

from __future__ import annotations

from pathlib import Path

import pytest

from pico.catalog.families import FAMILY_TABLE, defaults_for, families_table, family_of, guess_family
from pico.catalog.models import FLUX_DEV_MODEL, FLUX_SCHNELL_MODEL, SD35_MEDIUM_MODEL, SHORT_NAMES, SDXL_MODEL
from pico.catalog.pipelines import pipeline_info, text_to_image_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_table_holds_each_family_once_with_its_route():
    assert list(FAMILY_TABLE) == ["sd1", "sd2", "sdxl", "sd3", "flux-schnell", "flux-dev"]
    for family in FAMILY_TABLE.values():
        assert pipeline_info(family.route).task == "text-to-image"
        assert text_to_image_pipeline(family.default_model).route == family.route
        assert family_of(family.default_model) == family.id
    schnell, dev = FAMILY_TABLE["flux-schnell"], FAMILY_TABLE["flux-dev"]
    assert (schnell.steps, schnell.guidance, schnell.distilled_guidance, schnell.max_sequence_length) == (4, 0, False,
                                                                                                           256)
    assert (dev.steps, dev.guidance, dev.distilled_guidance, dev.max_sequence_length) == (28, 3.5, True, 512)
    assert {f.id for f in FAMILY_TABLE.values() if f.flow} == {"sd3", "flux-schnell", "flux-dev"}
    assert {f.cuda_precision for f in FAMILY_TABLE.values() if not f.flow} == {"half"}


@pytest.mark.parametrize("model, family", [
    ("someone/flux-dev-portraits", "flux-dev"), ("someone/FLUX.1-schnell-fp8", "flux-schnell"),
    ("someone/sd3.5-anime", "sd3"), ("stabilityai/stable-diffusion-3-medium-diffusers", "sd3"),
    ("someone/juggernaut-xl-v9", "sdxl"), ("someone/mystery", None),
])
def test_names_tell_the_family_or_nothing(model, family):
    assert guess_family(model) == family


def test_short_names_and_route_fallbacks():
    assert (SHORT_NAMES["sd35"], SHORT_NAMES["flux-schnell"], SHORT_NAMES["flux-dev"]) == (
        SD35_MEDIUM_MODEL, FLUX_SCHNELL_MODEL, FLUX_DEV_MODEL)
    assert defaults_for("someone/mystery", "flux-dev").id == "flux-dev"  # the flux route's fallback
    assert defaults_for(FLUX_SCHNELL_MODEL, "flux-dev").id == "flux-schnell"  # the name tells: it wins
    assert defaults_for(SDXL_MODEL).steps == 50


def test_the_readme_families_table_is_the_code_table():
    assert families_table() in README.read_text("utf-8"), (
        "README.md's families table differs from pico.catalog.families.families_table(); paste its output")
