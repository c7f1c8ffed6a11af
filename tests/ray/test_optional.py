"""Ray stays optional: without --ray nothing imports it; a job whose replica died runs once more."""

from __future__ import annotations

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
