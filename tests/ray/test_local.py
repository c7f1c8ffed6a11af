"""``--ray local``: a cluster of the command's own, the same pixels as a local run, nothing of Ray left behind."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.conftest import run_pico, write_png
from tests.ray.conftest import assert_no_ray_process_left
from tests.ray.test_serve import wait_for
from tests.live import tiny_server

pytestmark = pytest.mark.ray

JOBS = [
    {"Id": "cats", "Pipeline": "stable-diffusion", "Phrase": "ginger cat", "Seed": 11, "Steps": 3, "Total": 2},
    {"Id": "xl", "Pipeline": "stable-diffusion-xl", "Phrase": "dog", "Seed": 12, "Steps": 3},
    {"Id": "redrawn", "Pipeline": "image-to-image", "Phrase": "oil", "Image": "cat.png", "Seed": 13, "Steps": 3},
    {"Id": "more-cats", "Pipeline": "stable-diffusion", "Phrase": "tabby", "Seed": 14, "Steps": 3},
    {"Pipeline": "stable-diffusion", "Phrase": "bad", "Seed": -7},
]


def images(folder: Path) -> dict[str, np.ndarray]:
    """job/seed -> pixels, for every PNG under ``folder``."""
    found = {}
    for path in sorted(folder.glob("*/*.png")):
        seed = path.stem.rsplit("-", 1)[1]
        found[f"{path.parent.name}/{seed}"] = np.asarray(Image.open(path).convert("RGB"))
    return found


def test_batch_on_a_local_cluster_matches_a_local_run_pixel_for_pixel(tiny_models, tmp_path, ray_temp):
    pytest.importorskip("ray")
    write_png(tmp_path / "cat.png")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(job) + "\n" for job in JOBS))
    models = ["--models-dir", tiny_models, "--device", "cpu"]
    ray_env = {"RAY_TMPDIR": str(ray_temp)}

    on_ray = run_pico("batch", jobs, "--out", "ray", "--ray", "local", "--replicas", "2", "--report", "ray.json",
                      *models, cwd=tmp_path, env=ray_env)
    assert on_ray.returncode == 1, on_ray.stderr  # the bad line
    assert "invalid: line 5 (job-0005): Seed must be between -1 and 4294967295, got -7" in on_ray.stderr
    report = json.loads((tmp_path / "ray.json").read_text())
    assert {k: report[k] for k in ("Done", "Skipped", "Failed", "Images")} == {
        "Done": 4, "Skipped": 0, "Failed": 1, "Images": 5}
    # Each replica computes on one core; PyTorch's CPU sums depend on the thread count, so the local
    # run gets one thread too (on GPUs, and on CPUs with equal threads, the pixels are the same).
    local = run_pico("batch", jobs, "--out", "local", *models, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 1, local.stderr
    made_on_ray, made_here = images(tmp_path / "ray"), images(tmp_path / "local")
    assert sorted(made_on_ray) == sorted(made_here) == [
        "cats/11", "cats/12", "more-cats/14", "redrawn/13", "xl/12"]
    for name, pixels in made_here.items():
        assert np.array_equal(made_on_ray[name], pixels), name

    again = run_pico("batch", jobs, "--out", "ray", "--ray", "local", "--report", "ray.json", *models,
                     cwd=tmp_path, env=ray_env)
    assert again.returncode == 1, again.stderr
    report = json.loads((tmp_path / "ray.json").read_text())
    assert (report["Done"], report["Skipped"]) == (0, 4)  # all done: no cluster was even started
    assert len(list((ray_temp / "ray").glob("session_2*"))) == 1  # the first run's cluster only


def test_sigterm_lets_the_running_generation_finish_then_stops_the_local_cluster(tiny_models, tmp_path, ray_temp):
    pytest.importorskip("ray")
    live = tiny_server(tiny_models, "--ray", "local", env={"RAY_TMPDIR": str(ray_temp)}, log=tmp_path / "serve.log",
                       hold=tmp_path / "hold")  # the replica holds its steps while the file exists
    try:
        with ThreadPoolExecutor(1) as pool, live.held() as hold:
            running = pool.submit(live.post, "/api/v1/stable-diffusion",
                                  {"Phrase": "cat", "Steps": 4, "Width": 64, "Height": 64, "Seed": 3})
            wait_for(lambda: live.get("/api/v1/status").json["Jobs"], lambda jobs: jobs and jobs[0]["Step"] > 0,
                     what="the generation's first step")
            live.process.send_signal(signal.SIGTERM)  # while the generation is held at its first step
            hold.release()
            reply = running.result(timeout=120)
        assert reply.status == 200, reply.body
        assert [image["Metadata"]["Seed"] for image in reply.json["Images"]] == [3]
        code = live.process.wait(120)  # it shuts the cluster down after the answer
    finally:
        live.stop()
    assert code == 0, live.log_text()
    assert "stopped" in live.log_text()
    assert_no_ray_process_left(ray_temp)
