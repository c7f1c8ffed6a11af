"""The real entry point, ``python -m pico``, as a shell or a CI job runs it (a few: each pays the imports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.cli.conftest import flat, pixels, png_files, run_pico


def test_demo_images_carry_parameters_that_make_them_again(pico, tmp_path, demo_cache, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    made = run_pico("stable-diffusion-xl", "ginger cat", "--demo", "--total", "2", "--steps", "2", "--device", "cpu",
                    cwd=work, env={"PICO_CACHE_DIR": str(demo_cache)})
    assert made.returncode == 0, made.stderr
    files = png_files(work / "pico-out")
    assert len(files) == 2
    assert made.stdout.splitlines() == [f"pico-out/{f.name}" + made.stdout.splitlines()[i][len(f"pico-out/{f.name}"):]
                                        for i, f in enumerate(files)]
    assert "demo mode:" in made.stderr and "noise" in made.stderr

    monkeypatch.setenv("PICO_CACHE_DIR", str(demo_cache))  # no --demo: the file says it was made in demo mode
    again = pico("again", files[1], "--device", "cpu", "--out", "again", "--json", "--check")
    assert again.exit_code == 0, again.output
    remade = Path(json.loads(again.stdout)["path"])
    assert np.array_equal(pixels(remade), pixels(files[1]))
    assert not np.array_equal(pixels(remade), pixels(files[0]))


def test_a_batch_is_validated_before_anything_loads(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"Pipeline": "stable-diffusion", "Phrase": "cat", "Steps": 2, "Seed": 1}\n'
        '{"Pipeline": "stable-diffusion", "Phrase": "cat", "Steps": 2, "GuidanceScale": "high"}\n'
        '{"Pipeline": "stable-diffusion-2", "Phrase": "cat", "Steps": 2, "Seed": 2}\n')
    result = run_pico("batch", jobs, "--fail-fast", "--quiet", "--report", "report.json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert flat(result.stderr) == ("invalid: line 2 (job-0002): GuidanceScale must be a number between 0 and 10, "
                                   "got the string 'high' 1 bad line(s); nothing generated (--fail-fast)")
    assert result.stdout == ""
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["Line"], r["Status"]) for r in report["Results"]] == [(1, "not run"), (2, "invalid"), (3, "not run")]
    assert (report["Done"], report["Failed"], report["NotRun"], report["Images"]) == (0, 1, 2, 0)
    assert not (tmp_path / "pico-out").exists()


def test_bad_input_fails_fast_with_one_line_and_a_traceback_only_when_verbose(tmp_path):
    quiet = run_pico("stable-diffusion", "cat", "--scheduler", "Eulr", cwd=tmp_path)
    assert quiet.returncode == 2
    assert flat(quiet.stderr).startswith("error: Scheduler must be one of 'DPM++ 2M'")
    assert "Traceback" not in quiet.stderr and quiet.stdout == ""
    loud = run_pico("image-to-image", "cat", "--image", "nope.png", "--verbose", cwd=tmp_path)
    assert loud.returncode == 2
    assert "Traceback" in loud.stderr
    assert flat(loud.stderr).endswith("error: --image: no such file: " + str(tmp_path / "nope.png"))
