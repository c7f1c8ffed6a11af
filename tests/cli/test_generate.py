"""The six pipeline subcommands: files, names, output styles and errors, through Typer's runner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pico.cli.output import image_stem, write_new
from pico.schemas.images import read_parameters
from tests.cli.conftest import STEPS, flat, png_files, size_of, write_mask, write_png

NAME = re.compile(r"^\d{8}-\d{6}-(?P<command>[a-z0-9-]+?)-(?P<seed>\d+)(_\d+)?\.(png|jpg|webp)$")


def inputs_for(command: str, folder: Path) -> list[str]:
    """The phrase and image options each command needs."""
    image = str(write_png(folder / "photo.png"))
    return {
        "stable-diffusion": ["ginger cat"],
        "stable-diffusion-2": ["ginger cat"],
        "stable-diffusion-xl": ["ginger cat"],
        "image-to-image": ["ginger cat", "--image", image],
        "image-variation": ["--image", image],
        "inpaint": ["ginger cat", "--image", image, "--mask", str(write_mask(folder / "mask.png"))],
    }[command]


@pytest.mark.parametrize("command", ["stable-diffusion", "stable-diffusion-2", "stable-diffusion-xl",
                                     "image-to-image", "image-variation", "inpaint"])
def test_each_subcommand_writes_one_png_per_image(pico, models, tmp_path, command):
    result = pico(command, *inputs_for(command, tmp_path), "--total", "2", "--seed", "41", *STEPS, *models,
                  "--quiet")
    assert result.exit_code == 0, result.output
    files = png_files(tmp_path / "pico-out")
    assert result.stdout.splitlines() == [f"pico-out/{f.name}" for f in files]
    assert [(NAME.match(f.name)["command"], NAME.match(f.name)["seed"]) for f in files] == [
        (command, "41"), (command, "42")]
    assert [size_of(f) for f in files] == [(64, 64), (64, 64)]
    embedded = read_parameters(files[1].read_bytes())["pico"]
    assert (embedded["Request"]["Seed"], embedded["Request"]["Total"], embedded["Metadata"]["Seed"],
            embedded["Metadata"]["Index"], embedded["Metadata"]["Quality"]) == (41, 2, 42, 1, 2)


def test_options_become_the_request(pico, models, tmp_path):
    result = pico("stable-diffusion", "ginger cat", "--negative", "dog", "--seed", "7", "--guidance-scale", "6.5",
                  "--scheduler", "euler a", "--width", "72", "--height", "64", "--precision", "full",
                  "--attention-slicing", *STEPS, *models, "--out", "renders", "--json")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    path = Path(record["path"])
    assert path.parent == Path("renders") and path.exists()
    assert (record["seed"], record["index"], record["pipeline"], record["warnings"]) == (
        7, 0, "stable-diffusion", [])
    assert record["metadata"] == {
        "Model": "runwayml/stable-diffusion-v1-5", "Phrase": "ginger cat", "NegativePhrase": "dog",
        "GuidanceScale": 6.5, "Quality": 2, "Precision": "full", "Scheduler": "Euler a",
        "Seed": 7, "Index": 0, "Width": 72, "Height": 64,
    }
    found = read_parameters(path.read_bytes())
    assert found["pico"]["Request"] == {
        "Model": "runwayml/stable-diffusion-v1-5", "Total": 1, "Seed": 7, "GuidanceScale": 6.5, "Quality": None,
        "Steps": 2, "Precision": "full", "VaeType": "original", "AttentionSlicing": True, "Width": 72,
        "Height": 64, "Scheduler": "Euler a", "OutputFormat": "png", "Phrase": "ginger cat",
        "NegativePhrase": "dog", "PromptSyntax": "a1111", "ClipSkip": None, "Loras": [], "Hires": None,
    }
    assert found["parameters"] == ("ginger cat\nNegative prompt: dog\nSteps: 2, Sampler: Euler a, CFG scale: 6.5, "
                                   "Seed: 7, Size: 72x64, Model: runwayml/stable-diffusion-v1-5")


def test_json_lines_carry_warnings_and_progress_stays_on_stderr(pico, models):
    result = pico("stable-diffusion-xl", "ginger cat", "--total", "2", *STEPS, *models, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    assert records[1]["seed"] == records[0]["seed"] + 1
    assert all(r["warnings"] == ["Precision 'half' is not available on the CPU; ran in float32 (Precision 'full')."]
               for r in records)
    assert "2/2" in result.stderr  # the step bar
    assert "warning:" not in result.stderr


def test_default_output_names_each_file_and_warns_on_stderr(pico, models, tmp_path):
    result = pico("stable-diffusion", "ginger cat", "--seed", "5", *STEPS, *models)
    assert result.exit_code == 0, result.output
    [written] = png_files(tmp_path / "pico-out")
    assert result.stdout == f"pico-out/{written.name}  seed 5 · 64x64 · 2 steps · " + \
        result.stdout.split(" · ")[-1]
    assert "warning: Precision 'half' is not available on the CPU" in result.stderr


def test_other_formats_and_no_overwrite(pico, models, tmp_path):
    for fmt in ("jpeg", "jpeg", "webp"):
        result = pico("stable-diffusion", "cat", "--seed", "3", "--format", fmt, *STEPS, *models, "-q")
        assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "pico-out").iterdir(), key=lambda f: (f.suffix, f.name))
    assert [f.suffix for f in files] == [".jpg", ".jpg", ".webp"]
    assert len({f.name for f in files}) == 3
    assert [f.read_bytes()[:3] for f in files[:2]] == [b"\xff\xd8\xff"] * 2
    webp = files[2].read_bytes()
    assert (webp[:4], webp[8:12]) == (b"RIFF", b"WEBP") and size_of(files[2]) == (64, 64)
    assert read_parameters(files[0].read_bytes()) == {"pico": None, "parameters": None}


def test_out_of_memory_exits_5_with_a_hint(pico, models, tmp_path, monkeypatch):
    monkeypatch.setenv("PICO_FAULTS", "oom:1")  # the fault seam: the first generation runs out of memory
    result = pico("stable-diffusion", "cat", *STEPS, *models)
    assert result.exit_code == 5, result.output
    assert "error: The cpu device ran out of memory" in flat(result.stderr)
    assert "detail: CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)" in flat(result.stderr)
    assert "hint: Ask for fewer images (Total)" in flat(result.stderr) and "Traceback" not in result.stderr
    assert not (tmp_path / "pico-out").exists() or png_files(tmp_path / "pico-out") == []


def test_demo_models_writes_every_default_model(demo_models_run):
    # The suite's tiny models are made by `pico demo-models DIR` (tests/conftest.py), so every test uses them.
    from pico.catalog.models import (DEFAULT_MODELS, KNOWN_FAMILY_MODELS, SD35_LARGE_TURBO_MODEL, SD_X4_UPSCALER_MODEL,
                                     SDXL_FP16_VAE, SDXL_INPAINT_MODEL, VAE_MODELS)
    from pico.pipelines.tiny import DEMO_CHECKPOINTS, DEMO_LORAS

    folder, result = demo_models_run
    ids = [str(Path(line).relative_to(folder)) for line in result.stdout.splitlines()]
    pipelines = {*DEFAULT_MODELS, *KNOWN_FAMILY_MODELS, SD_X4_UPSCALER_MODEL} - {
        SD35_LARGE_TURBO_MODEL, SDXL_INPAINT_MODEL}  # no tiny ones: Large Turbo and SDXL inpainting load by name only
    assert sorted(ids) == sorted({*pipelines, *VAE_MODELS.values(), SDXL_FP16_VAE, *DEMO_CHECKPOINTS, *DEMO_LORAS})
    assert all((folder / model_id / "model_index.json").exists() for model_id in pipelines)
    assert all((folder / file).is_file() for file in (*DEMO_CHECKPOINTS, *DEMO_LORAS))
    assert all((folder / vae / "config.json").exists() for vae in (*VAE_MODELS.values(), SDXL_FP16_VAE))


def test_a_taken_name_gets_a_counter_and_the_old_file_is_kept(tmp_path):
    from datetime import datetime

    stem = image_stem("stable-diffusion", 9, datetime(2026, 11, 27, 14, 30, 5))
    assert stem == "20261127-143005-stable-diffusion-9"
    first = write_new(tmp_path, stem, "png", b"one")
    second = write_new(tmp_path, stem, "png", b"two")
    third = write_new(tmp_path, stem, "png", b"three")
    assert [p.name for p in (first, second, third)] == [
        f"{stem}.png", f"{stem}_2.png", f"{stem}_3.png"]
    assert first.read_bytes() == b"one"


@pytest.mark.parametrize(("args", "message"), [
    (["stable-diffusion", "cat", "--scheduler", "Eulerish"], "error: Scheduler must be one of 'DPM++ 2M'"),
    (["stable-diffusion", "cat", "--total", "9"], "error: Total must be between 1 and 5, got 9"),
    (["stable-diffusion", "cat", "--guidance-scale", "11"], "error: GuidanceScale must be between 0 and 10, got 11"),
    (["stable-diffusion", "cat", "--width", "100", "--height", "64"], "error: Width must be a multiple of 8, got 100"),
    (["stable-diffusion", "cat", "--width", "64"], "error: Height must be given together with Width"),
    (["stable-diffusion-xl", "cat", "--vae", "mse"], "error: VaeType 'mse' does not fit SDXL model"),
    (["stable-diffusion", "cat", "--model", "../etc"], "error: Model must be a model id (org/name) or a checkpoint's name"),
    (["image-to-image", "cat", "--image", "missing.png"], "error: --image: no such file: "),
    (["inpaint", "cat", "--image", "photo.png", "--mask", "notes.txt"],
     "error: --mask notes.txt is not an image in a format PICO can read"),
    (["image-variation", "--image", "."], "is a folder, not an image file"),
])
def test_bad_input_is_one_line_and_exit_status_2(pico, tmp_path, args, message):
    write_png(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("not an image")
    result = pico(*args, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert message in flat(result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "pico-out").exists()


def test_unknown_model_exits_3(pico, models):
    refused = pico("stable-diffusion", "cat", "--model", "nobody/nothing", *STEPS, *models)
    assert refused.exit_code == 3, refused.output
    assert flat(refused.stderr).startswith("error: Model nobody/nothing is not allowed")
    missing = pico("stable-diffusion", "cat", "--model", "nobody/nothing", "--allow-model", "nobody/*", *STEPS, *models)
    assert missing.exit_code == 3, missing.output
    assert flat(missing.stderr).startswith("error: ") and "nobody/nothing" in flat(missing.stderr)
    assert "not allowed" not in missing.stderr
    assert "Traceback" not in refused.stderr + missing.stderr


def test_a_missing_required_option_is_a_usage_error(pico):
    result = pico("inpaint", "cat", "--image", "x.png")
    assert result.exit_code == 2
    assert "Missing option '--mask'" in result.stderr


def test_out_must_be_a_folder(pico, models, tmp_path):
    (tmp_path / "taken").write_text("a file")
    result = pico("stable-diffusion", "cat", *STEPS, *models, "--out", "taken")
    assert result.exit_code == 1
    assert flat(result.stderr) == "error: --out taken is a file, not a folder"


def test_help_states_defaults_ranges_and_an_example(pico):
    result = pico("stable-diffusion-xl", "--help")
    assert result.exit_code == 0
    text = flat(result.stdout)
    assert "[range: 0 to 10] [default: 5]" in text  # SDXL's own guidance default
    assert "[range: 1 to 5] [default: 1]" in text
    assert 'pico stable-diffusion-xl "ginger cat" --total 2 --seed 42 --steps 30' in text
