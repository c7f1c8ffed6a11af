"""Ray stays optional: without --ray nothing imports it; a job whose replica died runs once more."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pico.cli.options import Common
from pico.config import Settings
from pico.errors import ReplicaFailed
from tests.live import tiny_server


def test_pico_serve_without_ray_never_imports_it(tiny_models, tmp_path):
    live = tiny_server(tiny_models, log=tmp_path / "serve.log")
    try:
        reply = live.post("/api/v1/stable-diffusion", {"Phrase": "cat", "Steps": 1, "Width": 64, "Height": 64})
        assert reply.status == 200
        maps = Path(f"/proc/{live.process.pid}/maps").read_text()
    finally:
        assert live.stop() == 0
    assert "_raylet" not in maps and "/ray/" not in maps


class DyingBackend:
    """A cluster whose replicas die under the first ``deaths`` calls (what Serve reports as ActorDiedError)."""

    device = "ray (cpu)"

    def __init__(self, deaths: int):
        self.deaths = deaths
        self.calls = 0

    def is_loaded(self, model: str) -> bool:
        return True

    def generate(self, request, on_step=None):
        self.calls += 1
        if self.calls <= self.deaths:
            raise ReplicaFailed("the replica died")
        return "generation"


@pytest.mark.parametrize(("deaths", "calls", "fails"), [(1, 2, False), (2, 2, True)])
def test_a_batch_job_whose_replica_died_runs_once_more_then_fails(deaths, calls, fails, tmp_path):
    from pico.catalog.pipelines import find_pipeline
    from pico.ray.batch import ClusterSession

    pipeline = find_pipeline("stable-diffusion")
    request = pipeline.request_type.parse({"Phrase": "cat"}, 4096)
    backend = DyingBackend(deaths)
    with ClusterSession(Common(out=tmp_path, quiet=True), Settings(), backend) as session:
        if fails:
            with pytest.raises(ReplicaFailed):
                session.generate(pipeline, request, "cat")
        else:
            assert session.generate(pipeline, request, "cat") == "generation"
    assert backend.calls == calls


def test_replicas_are_a_fixed_count_or_serve_autoscaling():
    pytest.importorskip("ray")
    from pico.ray.deployment import engine_options

    fixed = engine_options(Settings(replicas=3, threadsmax=2, queue=0), {"num_cpus": 1})
    assert (fixed["num_replicas"], fixed["max_ongoing_requests"], fixed["max_queued_requests"]) == (3, 2, 1)
    assert "autoscaling_config" not in fixed
    scaled = engine_options(Settings(min_replicas=0, max_replicas=4, threadsmax=2, queue=5), {"num_gpus": 1})
    assert scaled["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2}
    assert "num_replicas" not in scaled and scaled["max_queued_requests"] == 5
    assert scaled["ray_actor_options"] == {"num_gpus": 1}


def test_an_unreachable_cluster_is_one_line_and_exit_status_6(tiny_models, tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run([sys.executable, "-m", "pico", "serve", "--device", "cpu", "--models-dir", str(tiny_models),
                           "--ray", "127.0.0.1:9", "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_TMPDIR": str(tmp_path)})
    assert done.returncode == 6, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0], done.stderr
