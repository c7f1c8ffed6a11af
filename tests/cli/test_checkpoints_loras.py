"""Checkpoints and LoRAs from the shell: --model NAME, --lora NAME[:WEIGHT], pico models, batch files."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from PIL import Image

from tests.cli.conftest import STEPS, png_files


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_lora_options_and_a_checkpoint_name_draw_as_tags_on_the_folder(pico, models, tmp_path):
    options = ["--seed", "7", *STEPS, *models, "--json"]
    by_options = pico("stable-diffusion", "ginger cat", "--model", "tiny-sd15", "--lora", "add-detail:0.5",
                      "--lora", "pixel-art", "--out", "a", *options)
    assert by_options.exit_code == 0, by_options.output
    record = json.loads(by_options.stdout)
    assert record["metadata"]["Checkpoint"]["Name"] == "tiny-sd15.safetensors"
    assert [(lora["Name"], lora["Weight"]) for lora in record["metadata"]["Loras"]] == [
        ("add-detail.safetensors", 0.5), ("style/pixel-art.safetensors", 1.0)]
    by_tags = pico("stable-diffusion", "ginger cat <lora:add-detail:0.5> <lora:pixel-art>", "--out", "b", *options)
    assert by_tags.exit_code == 0, by_tags.output
    [a], [b] = png_files(tmp_path / "a"), png_files(tmp_path / "b")
    np.testing.assert_array_equal(pixels(a), pixels(b))


def test_bad_lora_options_exit_with_the_error_kinds_status(pico, models):
    missing = pico("stable-diffusion", "cat", "--lora", "nothing:0.5", *STEPS, *models)
    assert missing.exit_code == 3 and "LoRA 'nothing' was not found" in missing.output
    heavy = pico("stable-diffusion", "cat", "--lora", "add-detail:9", *STEPS, *models)
    assert heavy.exit_code == 2 and "Loras[0].Weight must be between -4 and 4, got 9" in heavy.output


def test_pico_models_lists_models_checkpoints_and_loras(pico, models, tiny_models, tmp_path):
    extra = tmp_path / "Lora"
    extra.mkdir()
    (extra / "legacy.pt").write_bytes(b"not opened")
    result = pico("models", "--models-dir", str(tiny_models), "--lora-dir", str(extra), "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert {c["Name"]: c["Family"] for c in listing["Checkpoints"]} == {
        "sdxl/tiny-sdxl.safetensors": "sdxl", "tiny-sd15.safetensors": "sd1"}
    assert {c["Name"]: c["Hash"] for c in listing["Checkpoints"]} == {  # hashed once, as A1111 lists them
        c["Name"]: hashlib.sha256((tiny_models / "checkpoints" / c["Name"]).read_bytes()).hexdigest()[:10]
        for c in listing["Checkpoints"]}
    loras = {lora["Name"]: lora for lora in listing["Loras"]}
    assert loras["legacy.pt"]["Status"] == "refused" and loras["legacy.pt"]["Folder"] == "Lora"
    assert loras["style/pixel-art.safetensors"]["Rank"] == 4
    table = pico("models", "--models-dir", str(tiny_models))
    assert table.exit_code == 0 and "tiny-sdxl" in table.output and "pixel-art" in table.output


def test_batch_jobs_take_loras_and_checkpoints_and_a_missing_lora_is_caught_before_generating(pico, models,
                                                                                              tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in [
        {"Id": "ok", "Pipeline": "stable-diffusion", "Phrase": "cat", "Model": "tiny-sd15", "Steps": 2,
         "Loras": [{"Name": "add-detail", "Weight": 0.5}]},
        {"Id": "missing", "Pipeline": "stable-diffusion", "Phrase": "cat <lora:nothing:1>", "Steps": 2},
    ]) + "\n")
    result = pico("batch", str(jobs), *models, "--report", "report.json")
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    statuses = {r["Id"]: r["Status"] for r in report["Results"]}
    assert statuses == {"ok": "done", "missing": "invalid"}
    assert "line 2 (missing): LoRA 'nothing' was not found" in result.output
