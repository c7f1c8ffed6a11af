"""`pico stable-diffusion-3`, `pico flux`, the refiner options and batch files with the new route names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pico.catalog.models import FLUX_DEV_MODEL, SDXL_REFINER_MODEL
from pico.schemas.images import read_parameters
from tests.cli.conftest import STEPS, png_files, size_of

SMALL = ["--width", "64", "--height", "64", *STEPS]


def test_the_family_commands_come_from_the_catalog(pico, models, tmp_path):
    sd3 = pico("stable-diffusion-3", "ginger cat", "--total", "2", "--seed", "8", *SMALL, *models, "--quiet")
    flux = pico("flux", "ginger (cat:1.2)", "--model", FLUX_DEV_MODEL, "--max-sequence-length", "64", "--seed", "8",
                *SMALL, *models)
    assert (sd3.exit_code, flux.exit_code) == (0, 0), sd3.output + flux.output
    files = png_files(tmp_path / "pico-out")
    assert sorted(f.name.split("-")[2] for f in files) == ["flux", "stable", "stable"]
    assert all(size_of(f) == (64, 64) for f in files)
    embedded = read_parameters(next(f for f in files if "flux" in f.name).read_bytes())["pico"]
    assert (embedded["Request"]["MaxSequenceLength"], embedded["Metadata"]["GuidanceScale"]) == (64, 3.5)
    assert "Phrase uses AUTOMATIC1111 weights or BREAK" in flux.stderr  # said, never silent


def test_again_remakes_a_flux_image_identically(pico, models, tmp_path):
    made = pico("flux", "ginger cat", "--seed", "3", *SMALL, *models, "--quiet")
    original = Path(made.stdout.strip())
    again = pico("again", original, *models, "--out", "again", "--quiet")
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.asarray(Image.open(again.stdout.strip())), np.asarray(Image.open(original)))


def test_the_sdxl_command_takes_a_refiner(pico, models):
    result = pico("stable-diffusion-xl", "cat", "--refiner", SDXL_REFINER_MODEL, "--refiner-switch-at", "0.5",
                  "--width", "64", "--height", "64", "--steps", "4", *models, "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout.splitlines()[0])["metadata"]
    assert (meta["Refiner"], meta["RefinerSwitchAt"]) == (SDXL_REFINER_MODEL, 0.5)


def test_a_scheduler_that_does_not_fit_is_a_usage_error(pico, models):
    result = pico("flux", "cat", "--scheduler", "DPM++ 2M", *models)
    assert result.exit_code == 2
    assert "does not fit FLUX.1 schnell models" in result.stderr and "Euler, UniPC" in result.stderr


def test_batch_files_use_the_route_names(pico, models, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in [
        {"Id": "sd3", "Pipeline": "stable-diffusion-3", "Phrase": "cat", "Width": 64, "Height": 64, "Steps": 2},
        {"Id": "flux", "Pipeline": "flux", "Phrase": "cat", "Width": 64, "Height": 64, "Steps": 2, "Total": 2},
    ]) + "\n")
    result = pico("batch", jobs, "--out", "out", *models, "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(Path(line).parent.name for line in result.stdout.splitlines()) == ["flux", "flux", "sd3"]
