"""``pico batch FILE``: many jobs from a JSON Lines file, resumable, for CI.

The whole file is validated first. Each job writes to OUT/<job id>/ and, once all its
images are written, a manifest (pico-job.json) naming them; a job whose manifest is
complete and asks for the same thing is skipped on the next run unless --force. Models
stay loaded from job to job. The run ends with a summary table, an optional JSON report,
and exit status 1 when any job failed or was invalid.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pico.cli.app import app, err_console
from pico.cli.batchfile import BatchJob, load_jobs
from pico.cli.options import Common, with_common
from pico.cli.output import prepare_folder, say, write_json_atomic
from pico.cli.session import Session, label_for
from pico.config import Settings
from pico.errors import InternalError, PicoError

MANIFEST = "pico-job.json"
PANEL = "Image files and batches"
INTERRUPTED = 130


@dataclass
class Result:
    """What became of one job."""

    line: int
    id: str | None
    pipeline: str | None
    status: str  # done, skipped, failed, invalid, not run
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: PicoError | None = None

    def to_dict(self) -> dict[str, Any]:
        """The job's entry in the --report file."""
        entry: dict[str, Any] = {"Line": self.line, "Id": self.id, "Pipeline": self.pipeline, "Status": self.status,
                                 "Outputs": self.outputs, "Seconds": round(self.seconds, 3)}
        if self.error is not None:
            entry["Error"] = self.error.to_dict()
        return entry


HELP = (
    "Run many generations from a file of jobs: resumable, validated up front, for CI.\n\n"
    'Each job is a REST request body plus [bold]"Pipeline"[/] (a route: stable-diffusion, stable-diffusion-2, '
    "stable-diffusion-xl, stable-diffusion-image-to-image, stable-diffusion-image-variation, "
    'stable-diffusion-inpaint). An optional [bold]"Id"[/] names the job\'s output folder (default: job-NNNN after '
    'its line). Input images are file paths in [bold]"Image"[/] and [bold]"Mask"[/], relative to FILE\'s folder, '
    "or base64 in ImageBase64 and MaskImageBase64. Field names are checked: an unknown one is an error. "
    "Blank lines and lines starting with # are skipped.\n\n"
    "Every line is checked before the first generation: bad lines are reported with their line numbers and the "
    "others run (with --fail-fast, nothing runs). Images go to OUT/<id>/. A job already done (its folder holds a "
    "complete pico-job.json for the same request) is skipped unless --force, so a failed CI run can simply be "
    "run again. Ends with a summary table; exits 1 when any job failed or was invalid.\n\n"
    "Example jobs.jsonl:\n\n"
    '{"Pipeline": "stable-diffusion-xl", "Phrase": "ginger cat", "Total": 2, "Seed": 42, "Id": "cat"}\n\n'
    '{"Pipeline": "stable-diffusion-image-to-image", "Phrase": "oil painting", "Image": "photos/cat.png"}\n\n'
    "[bold]pico batch jobs.jsonl --out renders --report renders/report.json[/]"
)


@app.command("batch", help=HELP, rich_help_panel=PANEL)
@with_common
def batch(
    file: Annotated[Path, typer.Argument(help="The jobs: JSON Lines (one object per line) or a JSON array.",
                                         metavar="FILE", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Run every job again, even those already done.")] = False,
    fail_fast: Annotated[bool, typer.Option(
        "--fail-fast",
        help="Stop at the first bad line or failed job (bad lines: before generating anything).")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write a JSON summary of every job to this file.", metavar="FILE",
        show_default=False)] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Spread the jobs over a Ray cluster's replicas: local (start one here), auto or "
        "HEAD:6379. Images are written here, as in a local run. Needs pip install 'pico[ray]'.",
        metavar="ADDRESS", show_default=False)] = None,
    replicas: Annotated[int | None, typer.Option(
        "--replicas", help="With --ray: engine replicas (each a GPU, or a share of the CPUs). [default: 1]",
        show_default=False)] = None,
    *, common: Common,
) -> None:
    """Run many generations from a file of jobs: resumable, validated up front, for CI."""
    started = time.perf_counter()
    settings = common.settings(ray=ray, replicas=replicas)
    jobs, bad = load_jobs(file, settings.max_pixels, model_check(settings))
    for line in bad:
        say(f"[bold red]invalid:[/] {escape(line.describe())}")
    results = {line.line: Result(line.line, line.id, None, "invalid", error=line.error) for line in bad}
    for job in jobs:
        results[job.line] = Result(job.line, job.id, job.pipeline.route, "not run")
    ordered = [results[n] for n in sorted(results)]
    status = 0
    if bad and fail_fast:
        say(f"[bold red]{len(bad)} bad line(s); nothing generated[/] (--fail-fast)")
    else:
        if bad and not common.quiet:
            say(f"{len(bad)} bad line(s) skipped; running the {len(jobs)} valid job(s)")
        prepare_folder(common.out)
        run = run_batch_jobs
        if settings.ray:  # Ray is imported only then
            from pico.ray.batch import run_batch_jobs as run
        status = run(jobs, results, file, common, settings, force, fail_fast)
    seconds = time.perf_counter() - started
    counts = summarize(ordered, seconds, quiet=common.quiet)
    if report is not None:
        write_json_atomic(report, {"File": str(file), "Out": str(common.out), **counts,
                                   "Results": [r.to_dict() for r in ordered]})
    if status:
        raise typer.Exit(status)
    if counts["Failed"]:
        raise typer.Exit(1)


def model_check(settings: Settings) -> Callable[[Any, str], Any]:
    """Refuses what the engine would refuse of a job's model and LoRAs (not allowed, not found, a checkpoint or
    LoRA of the wrong family), without loading anything."""
    from pico.catalog.resolver import ModelResolver

    return ModelResolver.for_settings(settings).plan


def run_batch_jobs(jobs: list[BatchJob], results: dict[int, Result], file: Path, common: Common, settings: Settings,
             force: bool, fail_fast: bool) -> int:
    """Run the valid jobs in file order on one engine; returns 130 when interrupted, else 0."""
    with Session(common, settings, keep_bars=False) as session:
        counter = session.view.counter("batch", total=len(jobs))
        for job in jobs:
            result = results[job.line]
            folder = common.out / job.id
            counter.show(f"batch ({job.id})")
            try:
                done = None if force else completed(folder, job)
                if done is not None:
                    result.status, result.outputs = "skipped", done
                else:
                    run_reported(session, job, file, folder, settings, result)
            except KeyboardInterrupt:
                say("[bold red]interrupted[/]; the jobs done so far are kept and skipped next time")
                return INTERRUPTED
            counter.advance()
            if result.status == "failed" and fail_fast:
                break
    return 0


def run_reported(session: Session, job: BatchJob, file: Path, folder: Path, settings: Settings,
                 result: Result) -> None:
    """Run one job; a failure is recorded in ``result`` and said at once, never raised: the batch goes on."""
    try:
        run_batch_job(session, job, file, folder, settings.max_pixels, result)
    except PicoError as exc:
        fail(result, exc)
    except Exception as exc:  # noqa: BLE001  (a bug or a library failure: report it, go on)
        if settings.verbose:
            err_console.print(traceback.format_exc(), markup=False, highlight=False)
        fail(result, InternalError(f"{type(exc).__name__}: {exc}"))


def run_batch_job(session: Session, job: BatchJob, file: Path, folder: Path, max_pixels: int, result: Result) -> None:
    """Generate one job, write its images, then its manifest (last, so a crash leaves it undone)."""
    started = time.perf_counter()
    request, images = job.request(file, max_pixels)
    saved = session.run(job.pipeline, request, folder, images, f"{job.id}: {label_for(job.pipeline, request)}",
                        extra={"job": job.id, "line": job.line})
    result.status, result.outputs = "done", [str(item.path) for item in saved]
    result.seconds = time.perf_counter() - started
    write_json_atomic(folder / MANIFEST, {
        "Id": job.id, "Line": job.line, "Pipeline": job.pipeline.route, "Fingerprint": job.fingerprint,
        "Request": request.parameters(), "Outputs": [item.path.name for item in saved],
        "Seeds": [item.seed for item in saved], "Seconds": round(result.seconds, 3),
        "Finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def completed(folder: Path, job: BatchJob) -> list[str] | None:
    """The outputs of a job already done (complete manifest, same request, files present), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("Fingerprint") != job.fingerprint:
        return None
    names = manifest.get("Outputs")
    if not isinstance(names, list) or not names:
        return None
    paths = [folder / str(name) for name in names]
    return [str(p) for p in paths] if all(p.is_file() for p in paths) else None


def fail(result: Result, error: PicoError) -> None:
    """Mark a job failed and say so on stderr at once."""
    result.status, result.error = "failed", error
    say(f"[bold red]failed:[/] line {result.line} ({escape(result.id or '?')}): {escape(error.message)}")


def summarize(results: list[Result], seconds: float, quiet: bool) -> dict[str, Any]:
    """Count the results and print the summary table on stderr (unless --quiet)."""
    by = {s: [r for r in results if r.status == s] for s in ("done", "skipped", "failed", "invalid", "not run")}
    counts = {
        "Jobs": len(results), "Done": len(by["done"]), "Skipped": len(by["skipped"]),
        "Failed": len(by["failed"]) + len(by["invalid"]), "NotRun": len(by["not run"]),
        "Images": sum(len(r.outputs) for r in by["done"]), "Seconds": round(seconds, 3),
    }
    if quiet:
        return counts
    table = Table(title="batch summary", title_justify="left")
    for name in ("Jobs", "Done", "Skipped", "Failed", "Not run", "Images", "Seconds"):
        table.add_column(name, justify="right")
    failed_style = "bold red" if counts["Failed"] else ""
    table.add_row(str(counts["Jobs"]), f"[green]{counts['Done']}[/]", str(counts["Skipped"]),
                  f"[{failed_style}]{counts['Failed']}[/]" if failed_style else "0", str(counts["NotRun"]),
                  str(counts["Images"]), f"{seconds:.1f}")
    err_console.print(table)
    for r in by["invalid"] + by["failed"]:
        if r.error is not None:
            say(f"  [red]{r.status}[/] line {r.line} ({escape(r.id or '?')}): {escape(r.error.message)}")
    return counts
