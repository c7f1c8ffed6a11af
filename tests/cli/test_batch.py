"""``pico batch``: validated up front, bad lines reported by number, resumable, summarised."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from pico.cli.batchfile import load_jobs
from tests.cli.conftest import flat, pixels, png_files, write_png

MAX_PIXELS = 2048 * 2048


def write_jobs(path: Path, *lines: object) -> Path:
    """A JSON Lines file: dicts are dumped, strings written as they are."""
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_bad_lines_are_reported_the_rest_run_and_a_rerun_skips_what_is_done(pico, models, tmp_path):
    write_png(tmp_path / "photos.png")
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "cat.png")
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"Pipeline": "stable-diffusion-xl", "Phrase": "ginger cat", "Total": 2, "Seed": 41, "Steps": 2, "Id": "cat"},
        "",
        {"Pipeline": "stable-diffusion", "Phrase": "dog", "Seed": -5, "Steps": 2},
        {"Pipeline": "image-to-image", "Phrase": "oil", "Image": "in/cat.png", "Seed": 3, "Steps": 2},
        {"Pipeline": "stable-diffusion", "Phrase": "cat", "Model": "runwayml/stable-diffusion-inpainting"},
        {"Pipeline": "image-variation", "Image": "in/missing.png", "Steps": 2},
        {"Pipeline": "stable-diffusion", "Phrase": "no model", "Model": "nobody/nothing", "Steps": 2},
        '{"Pipeline": "stable-diffusion", "Phrase": "oops"',
    )
    first = pico("batch", jobs, "--out", "out", "--report", "report.json", *models, "--json")
    assert first.exit_code == 1, first.output
    errors = flat(first.stderr)
    assert "invalid: line 3 (job-0003): Seed must be between -1 and 4294967295, got -5" in errors
    assert f"invalid: line 6 (job-0006): Image: no such file: {tmp_path / 'in' / 'missing.png'}" in errors
    assert "invalid: line 7 (job-0007): Model nobody/nothing is not allowed" in errors
    assert "invalid: line 8: not valid JSON: Expecting ',' delimiter at column 50" in errors
    assert "4 bad line(s) skipped; running the 3 valid job(s)" in errors
    assert ("failed: line 5 (job-0005): Model runwayml/stable-diffusion-inpainting is an inpainting model; "
            "stable-diffusion needs a text-to-image model") in errors
    assert "batch summary" in errors

    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["job"], r["line"], r["seed"]) for r in lines] == [("cat", 1, 41), ("cat", 1, 42), ("job-0004", 4, 3)]
    assert [len(png_files(tmp_path / "out" / job)) for job in ("cat", "job-0004")] == [2, 1]
    assert not (tmp_path / "out" / "job-0003").exists()

    report = json.loads((tmp_path / "report.json").read_text())
    assert {k: report[k] for k in ("Jobs", "Done", "Skipped", "Failed", "NotRun", "Images")} == {
        "Jobs": 7, "Done": 2, "Skipped": 0, "Failed": 5, "NotRun": 0, "Images": 3}
    assert [(r["Line"], r["Id"], r["Status"]) for r in report["Results"]] == [
        (1, "cat", "done"), (3, "job-0003", "invalid"), (4, "job-0004", "done"), (5, "job-0005", "failed"),
        (6, "job-0006", "invalid"), (7, "job-0007", "invalid"), (8, None, "invalid")]
    assert report["Results"][1]["Error"] == {"Code": "INVALID_REQUEST", "Field": "Seed",
                                             "Message": "Seed must be between -1 and 4294967295, got -5"}
    assert report["Results"][3]["Error"]["Code"] == "INVALID_REQUEST"
    assert report["Results"][5]["Error"]["Code"] == "MODEL_NOT_ALLOWED"
    manifest = json.loads((tmp_path / "out" / "cat" / "pico-job.json").read_text())
    assert (manifest["Id"], manifest["Line"], manifest["Seeds"]) == ("cat", 1, [41, 42])
    assert manifest["Outputs"] == [p.name for p in png_files(tmp_path / "out" / "cat")]

    second = pico("batch", jobs, "--out", "out", "--report", "report.json", *models, "--quiet")
    assert second.exit_code == 1
    assert second.stdout == ""
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["Done"], report["Skipped"], report["Failed"], report["Images"]) == (0, 2, 5, 0)
    assert [len(png_files(tmp_path / "out" / job)) for job in ("cat", "job-0004")] == [2, 1]

    forced = pico("batch", jobs, "--out", "out", "--force", *models, "--quiet")
    assert forced.exit_code == 1
    assert len(forced.stdout.splitlines()) == 3
    cat = png_files(tmp_path / "out" / "cat")
    assert len(cat) == 4  # the earlier files are kept, never overwritten
    for seed in (41, 42):  # the same seeds again: the same pixels
        old, new = [p for p in cat if p.stem.split("-")[-1].split("_")[0] == str(seed)]
        assert np.array_equal(pixels(old), pixels(new))


def test_fail_fast_generates_nothing_when_a_line_is_bad(pico, models, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl",
                      {"Pipeline": "stable-diffusion", "Phrase": "cat", "Steps": 2},
                      {"Pipeline": "stable-diffusion", "Phrase": "cat", "Steps": 999})
    result = pico("batch", jobs, "--fail-fast", *models)
    assert result.exit_code == 1
    assert "invalid: line 2 (job-0002): Steps must be between 1 and 250, got 999" in flat(result.stderr)
    assert "1 bad line(s); nothing generated (--fail-fast)" in flat(result.stderr)
    assert not (tmp_path / "pico-out").exists()


def test_a_changed_job_or_an_unfinished_one_is_run_again(pico, models, tmp_path):
    job = {"Pipeline": "stable-diffusion", "Phrase": "cat", "Steps": 2, "Seed": 1, "Id": "a"}
    jobs = write_jobs(tmp_path / "jobs.jsonl", job)
    assert pico("batch", jobs, *models, "-q").exit_code == 0
    assert pico("batch", jobs, *models, "-q").stdout == ""  # done: skipped
    write_jobs(jobs, {**job, "Seed": 2})
    changed = pico("batch", jobs, *models, "-q")
    assert changed.exit_code == 0 and changed.stdout.strip().endswith("-stable-diffusion-2.png")
    (tmp_path / "pico-out" / "a" / "pico-job.json").unlink()
    unfinished = pico("batch", jobs, *models, "-q")
    assert unfinished.exit_code == 0 and len(unfinished.stdout.splitlines()) == 1


def test_a_json_array_with_inline_images_and_again_from_it(pico, models, tmp_path):
    photo = base64.b64encode(write_png(tmp_path / "p.png").read_bytes()).decode()
    jobs = tmp_path / "jobs.json"
    inline_job = {"Pipeline": "stable-diffusion-image-variation", "ImageBase64": photo, "Steps": 2, "Id": "v 1"}
    jobs.write_text(f'[\n  {json.dumps(inline_job)},\n  {{"Pipeline": "StableDiffusion", "Phrase": "cat", "Steps": 2}}\n]\n')
    result = pico("batch", jobs, *models, "--quiet")
    assert result.exit_code == 0, result.output
    variation, text = [Path(line) for line in result.stdout.splitlines()]
    assert (variation.parent.name, text.parent.name) == ("v-1", "job-0003")
    again = pico("again", variation, *models, "--out", "again", "-q")
    assert again.exit_code == 0, again.output
    assert np.array_equal(pixels(Path(again.stdout.strip())), pixels(variation))


def test_validation_names_lines_and_fields(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        "# a comment",
        {"Pipeline": "stable-diffusion", "Phrase": "cat", "Sede": 4},
        {"Pipeline": "stable-diffusion", "Phrase": "cat", "Id": "x"},
        {"Pipeline": "stable-diffusion", "Phrase": "cat", "Id": "x"},
        {"Phrase": "cat"},
        {"Pipeline": "outpaint", "Phrase": "cat"},
        {"Pipeline": "image-to-image", "Phrase": "cat", "Image": "a.png", "ImageBase64": "AAAA"},
        {"Pipeline": "stable-diffusion", "Phrase": "cat", "Id": "../.."},
        "[1, 2]",
    )
    good, bad = load_jobs(jobs, MAX_PIXELS)
    assert [(j.line, j.id, j.pipeline.route) for j in good] == [(3, "x", "stable-diffusion")]
    assert [b.describe() for b in bad] == [
        "line 2 (job-0002): unknown field 'Sede' for stable-diffusion; did you mean 'Seed'?",
        "line 4 (x): Id 'x' is already used by line 3",
        ("line 5 (job-0005): Pipeline is required: one of stable-diffusion, stable-diffusion-2, stable-diffusion-xl, "
         "stable-diffusion-image-to-image, stable-diffusion-image-variation, stable-diffusion-inpaint, "
         "stable-diffusion-3, flux, upscale"),
        ("line 6 (job-0006): Unknown pipeline 'outpaint'; known: stable-diffusion, stable-diffusion-2, "
         "stable-diffusion-xl, stable-diffusion-image-to-image, stable-diffusion-image-variation, "
         "stable-diffusion-inpaint, stable-diffusion-3, flux, upscale"),
        "line 7 (job-0007): give Image (a file path) or ImageBase64 (base64), not both",
        "line 8: Id '../..' has no letters or digits to name a folder with",
        "line 9: a job must be a JSON object, got an array",
    ]


def test_an_unreadable_batch_file_is_one_error(pico, tmp_path):
    (tmp_path / "broken.json").write_text('[{"Pipeline": "stable-diffusion"},\n {"Phrase": }]')
    (tmp_path / "empty.jsonl").write_text("\n\n")
    cases = {"missing.jsonl": "error: FILE: no such file: missing.jsonl",
             "broken.json": "error: broken.json: line 2: not valid JSON: Expecting value",
             "empty.jsonl": "error: empty.jsonl holds no jobs"}
    for name, message in cases.items():
        result = pico("batch", name, "--device", "cpu")
        assert result.exit_code == 2, result.output
        assert flat(result.stderr).startswith(message)
