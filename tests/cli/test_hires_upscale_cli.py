"""Hires fix options (--hires-scale and friends), batch files with "Hires", and `pico upscale`."""

from __future__ import annotations

import json

from PIL import Image

from pico.schemas.images import read_parameters
from tests.cli.conftest import STEPS, png_files, write_png


def test_hires_options_make_the_larger_image(pico, models, tmp_path):
    result = pico("stable-diffusion", "ginger cat", "--width", "64", "--height", "64", "--hires-scale", "1.5",
                  "--hires-upscaler", "lanczos", "--hires-strength", "0.5", "--hires-steps", "2", "--seed", "3",
                  *STEPS, *models, "--quiet")
    assert result.exit_code == 0, result.output
    (file,) = png_files(tmp_path / "pico-out")
    assert Image.open(file).size == (96, 96)
    embedded = read_parameters(file.read_bytes())["pico"]
    assert embedded["Request"]["Hires"] == {"Scale": 1.5, "Width": None, "Height": None, "Upscaler": "Lanczos",
                                            "Steps": 2, "Strength": 0.5, "Scheduler": None, "Phrase": None,
                                            "NegativePhrase": None}


def test_a_bad_hires_option_names_the_nested_field(pico, models):
    result = pico("stable-diffusion", "cat", "--hires-scale", "9", *models)
    assert result.exit_code == 2 and "Hires.Scale must be between 1 and 4, got 9" in result.output


def test_batch_jobs_take_the_hires_object(pico, models, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"Pipeline": "stable-diffusion", "Id": "big", "Phrase": "cat", "Steps": 2,
                                "Width": 64, "Height": 64, "Hires": {"Scale": 2, "Strength": 0.5}}) + "\n"
                    + json.dumps({"Pipeline": "stable-diffusion", "Phrase": "cat", "Hires": {"Scal": 2}}) + "\n")
    result = pico("batch", str(jobs), *models, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "unknown field 'Hires.Scal'" in result.output
    (file,) = png_files(tmp_path / "out" / "big")
    assert Image.open(file).size == (128, 128)


def test_upscale_command(pico, models, tmp_path):
    image = write_png(tmp_path / "photo.png", size=(40, 48))
    result = pico("upscale", "--image", str(image), "--scale", "2", *models, "--quiet")
    assert result.exit_code == 0, result.output
    (file,) = png_files(tmp_path / "pico-out")
    assert Image.open(file).size == (80, 96)
    result = pico("upscale", "a cat", "--image", str(image), "--upscaler", "SD x4", "--scale", "4", *STEPS, *models,
                  "--quiet", "--out", str(tmp_path / "x4"))
    assert result.exit_code == 0, result.output
    (file,) = png_files(tmp_path / "x4")
    assert Image.open(file).size == (160, 192)
    assert read_parameters(file.read_bytes())["pico"]["Metadata"]["Phrase"] == "a cat"
