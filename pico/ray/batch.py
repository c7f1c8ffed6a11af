"""``pico batch FILE --ray ADDRESS``: the same batch (validation, resume, report), its jobs spread over the replicas.

Jobs go to the same Serve deployment ``pico serve --ray`` uses, not to Ray Data: a batch job
is a request, so it gets the same model multiplexing (a model's jobs go to the replica that
holds it warm), back-pressure, cancel and fault handling, with no second code path and no
extra dependency (``ray[data]`` adds pandas and pyarrow). Enough jobs are in flight to fill
every slot; Serve routes them. Input files are read here and travel inside the requests;
images come back and are written here, under the same names, by the same code as a local run.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from pico.cli.output import say
from pico.cli.session import Session
from pico.config import Settings
from pico.errors import Busy, ClusterUnavailable, ReplicaFailed

if TYPE_CHECKING:
    from pico.catalog.pipelines import PipelineInfo
    from pico.cli.batch import Result
    from pico.cli.batchfile import BatchJob
    from pico.cli.options import Common
    from pico.ray.backend import RayBackend
    from pico.schemas.requests import GenerationRequest
    from pico.schemas.results import Generation

INTERRUPTED = 130
BUSY_WAIT_LIMIT = 3600  # seconds a job waits for a free slot before it fails


class ClusterSession(Session):
    """A command's session whose engine is the cluster; a job whose replica died is run once more."""

    def __init__(self, common: "Common", settings: Settings, backend: "RayBackend"):
        super().__init__(common, settings, keep_bars=False)
        self._engine = backend  # type: ignore[assignment]  # engine-like: the methods a Session calls

    def generate(self, pipeline: "PipelineInfo", request: "GenerationRequest", label: str) -> "Generation":
        """Generate on a replica; wait while every slot is busy; retry once when the replica dies."""
        retried = False
        deadline = time.monotonic() + BUSY_WAIT_LIMIT
        while True:
            try:
                return super().generate(pipeline, request, label)
            except ReplicaFailed as exc:
                if retried:
                    raise
                retried = True
                say(f"[yellow]retrying[/] {escape(label)}: {escape(exc.message)}")
            except ClusterUnavailable:
                raise
            except Busy as exc:  # more jobs in flight than the replicas now take (one may be restarting)
                if time.monotonic() > deadline:
                    raise
                time.sleep(exc.retry_after)


def run_batch_jobs(jobs: list["BatchJob"], results: dict[int, "Result"], file: Path, common: "Common",
                   settings: Settings, force: bool, fail_fast: bool) -> int:
    """Run the valid jobs on the cluster, as many at once as there are slots; 130 when interrupted, else 0.

    Jobs already done are skipped first, so a finished batch run again needs no cluster at all.
    """
    from pico.cli.batch import completed
    from pico.ray.backend import RayBackend
    from pico.ray.cluster import connect

    if not force:
        for job in jobs:
            done = completed(common.out / job.id, job)
            if done is not None:
                results[job.line].status, results[job.line].outputs = "skipped", done
        jobs = [job for job in jobs if results[job.line].status != "skipped"]
        if not jobs:
            return 0
    cluster = connect(settings)
    try:
        backend = RayBackend(settings, cluster)
        with ClusterSession(common, settings, backend) as session:
            return _run_all(session, jobs, results, file, common, settings, fail_fast)
    finally:
        cluster.close(delete_app=cluster.deployed)  # a batch that deployed the engines frees their GPUs


def _run_all(session: ClusterSession, jobs: list["BatchJob"], results: dict[int, "Result"], file: Path,
             common: "Common", settings: Settings, fail_fast: bool) -> int:
    from pico.cli.batch import run_reported

    counter = session.view.counter(f"batch on {settings.generation_slots} slot(s)", total=len(jobs))
    stop = threading.Event()  # --fail-fast after a failure, or Ctrl-C: start no more jobs

    def run_one(job: "BatchJob") -> None:
        if stop.is_set():
            return  # its result stays "not run"
        result = results[job.line]
        folder = common.out / job.id
        run_reported(session, job, file, folder, settings, result)
        counter.advance()
        if result.status == "failed" and fail_fast:
            stop.set()

    with ThreadPoolExecutor(settings.generation_slots, thread_name_prefix="pico-batch") as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            stop.set()
            say("[bold red]interrupted[/]; the jobs done so far are kept and skipped next time")
            return INTERRUPTED
    return 0
