"""``pico info`` and ``pico again``: the parameters in a PNG make the identical image again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pico.schemas.images import read_parameters
from tests.cli.conftest import STEPS, flat, pixels, png_files, write_png


def test_info_then_again_makes_the_identical_image(pico, models, tmp_path):
    made = pico("stable-diffusion-xl", "ginger cat", "--total", "2", *STEPS, *models, "-q")
    assert made.exit_code == 0, made.output
    first, second = png_files(tmp_path / "pico-out")

    info = pico("info", "--json", second)
    assert info.exit_code == 0, info.output
    shown = json.loads(info.stdout)
    seed = shown["pico"]["Metadata"]["Seed"]
    assert shown["pico"]["Request"]["Seed"] == seed - 1  # pinned to the first image of the batch
    assert shown["pico"]["Metadata"]["Index"] == 1
    assert f"Seed: {seed}, Size: 64x64" in shown["parameters"]

    again = pico("again", second, *models, "--out", "again", "--json", "--check")
    assert again.exit_code == 0, again.output
    record = json.loads(again.stdout)
    assert (record["seed"], record["index"], record["identical"], record["source"]) == (seed, 1, True, str(second))
    [remade] = png_files(tmp_path / "again")
    assert np.array_equal(pixels(remade), pixels(second))
    assert not np.array_equal(pixels(remade), pixels(first))
    assert read_parameters(remade.read_bytes())["pico"]["Request"] == shown["pico"]["Request"]


def test_info_prints_a_readable_table(pico, models, tmp_path):
    assert pico("stable-diffusion", "cat", "--seed", "12", *STEPS, *models, "-q").exit_code == 0
    [made] = png_files(tmp_path / "pico-out")
    result = pico("info", f"pico-out/{made.name}")
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert text.startswith(f"pico-out/{made.name} Pipeline stable-diffusion Request.Model runwayml/stable-diffusion-v1-5")
    assert "Request.Seed 12" in text and "Metadata.Quality 2" in text and "Run.Device cpu" in text
    assert f"make it again: pico again pico-out/{made.name}" in text
    assert text.endswith("parameters (AUTOMATIC1111 text) cat Steps: 2, Sampler: PNDM, CFG scale: 7.5, Seed: 12, "
                         "Size: 64x64, Model: runwayml/stable-diffusion-v1-5")


def test_again_reads_input_files_again_and_refuses_a_changed_one(pico, models, tmp_path):
    photo = write_png(tmp_path / "photo.png")
    made = pico("image-to-image", "cat", "--image", "photo.png", "--strength", "0.5", *STEPS, *models, "-q")
    assert made.exit_code == 0, made.output
    [image] = png_files(tmp_path / "pico-out")
    inputs = read_parameters(image.read_bytes())["pico"]["Inputs"]
    assert inputs["ImageBase64"]["Path"] == str(photo.resolve())
    assert inputs["ImageBase64"]["Bytes"] == photo.stat().st_size

    again = pico("again", image, *models, "--out", "again", "-q")
    assert again.exit_code == 0, again.output
    assert np.array_equal(pixels(Path(again.stdout.strip())), pixels(image))

    write_png(photo, color=(0, 0, 255))
    changed = pico("again", image, *models, "--out", "again")
    assert changed.exit_code == 2
    assert flat(changed.stderr).startswith(f"error: input {photo.resolve()} changed since the image was made")
    photo.unlink()
    missing = pico("again", image, *models, "--out", "again")
    assert missing.exit_code == 2
    assert flat(missing.stderr).startswith(f"error: input ImageBase64: no such file: {photo.resolve()}")


def test_files_without_parameters_are_refused(pico, tmp_path):
    plain = write_png(tmp_path / "plain.png")
    for command in ("info", "again"):
        result = pico(command, plain)
        assert result.exit_code == 2
        assert flat(result.stderr) == (f"error: {plain} carries no generation parameters "
                                       "hint: PICO writes them into PNG files only (--format png, the default).")
    missing = pico("info", "nowhere.png")
    assert missing.exit_code == 2
    assert flat(missing.stderr) == "error: FILE: no such file: nowhere.png"
