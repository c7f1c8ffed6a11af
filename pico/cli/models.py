"""``pico demo-models``: write the tiny offline models; ``pico models``: list what can run here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pico.cli.app import CheckpointDir, Demo, LoraDir, ModelsDir, Verbose, app, err_console, load_settings
from pico.cli.output import say


@app.command("demo-models")
def demo_models(
    folder: Annotated[Path, typer.Argument(help="Where to write them; each model goes to FOLDER/org/name.")],
) -> None:
    """Write tiny random-weight models for every default model id, a single-file checkpoint and two LoRAs (no download).

    They are real Diffusers pipelines of the same classes as the real models, so everything
    runs offline against them: point --models-dir at FOLDER. Their images are noise.

    Example: pico demo-models ./tiny && pico stable-diffusion "ginger cat" --models-dir ./tiny
    """
    from pico.pipelines.tiny import write_tiny_models

    with err_console.status("building tiny models"):
        written = write_tiny_models(folder)
    for model_id in written:
        typer.echo(folder / model_id)


@app.command("models")
def models(
    json_output: Annotated[bool, typer.Option("--json", help="Print the listing as one JSON object, for scripts.")] = False,
    models_dir: ModelsDir = None,
    checkpoint_dir: CheckpointDir = None,
    lora_dir: LoraDir = None,
    demo: Demo = None,
    verbose: Verbose = None,
    hash_files: Annotated[bool, typer.Option("--hash/--no-hash", help="Hash checkpoints not hashed yet (A1111's "
                                             "model hash: reads each new file once).")] = True,
) -> None:
    """List what PICO can run here: Diffusers models, single-file checkpoints (family, size, hash) and LoRAs
    (family, rank). Nothing is loaded; each new checkpoint is hashed once (--no-hash skips it).

    Example: pico models --checkpoint-dir ~/sd/models/Stable-diffusion --lora-dir ~/sd/models/Lora
    """
    from pico.catalog.listing import models_listing
    from pico.catalog.resolver import ModelResolver

    settings = load_settings(models_dir=models_dir, demo=demo, verbose=verbose,
                             checkpoint_dir=tuple(checkpoint_dir) if checkpoint_dir else None,
                             lora_dir=tuple(lora_dir) if lora_dir else None)
    resolver = ModelResolver.for_settings(settings)
    if hash_files and resolver.files is not None:
        unhashed = len(resolver.files.unhashed_checkpoints())
        if unhashed:
            say(f"hashing {unhashed} checkpoint file(s) as A1111 does (once per file; the hashes are kept)")
            resolver.files.hash_checkpoints()
    listing = models_listing(resolver)
    if json_output:
        typer.echo(json.dumps(listing, ensure_ascii=False, indent=2))
        return
    console = Console(soft_wrap=False)
    console.print(_table("Diffusers models", ("Id", "Kind", "Family", "Where", "Commands"), [
        (m["Id"], m["Kind"], m["Family"] or "?", "models dir" if m["Local"] else "hub", _commands(m["Pipelines"]))
        for m in listing["Models"]]))
    console.print(_table("Checkpoints", ("Name", "Folder", "Family", "Size", "Hash", "Status"), [
        (c["Name"], c["Folder"], c["Family"] or "?", _size(c["Size"]), c["Hash"] or "",
         c["Status"] if c["Status"] == "ok" else f"{c['Status']}: {c['Reason']}") for c in listing["Checkpoints"]]))
    console.print(_table("LoRAs", ("Name", "Folder", "Family", "Rank", "Size", "Status"), [
        (lora["Name"], lora["Folder"], lora["Family"] or "?", str(lora["Rank"] or ""), _size(lora["Size"]),
         lora["Status"] if lora["Status"] == "ok" else f"{lora['Status']}: {lora['Reason']}")
        for lora in listing["Loras"]]))


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=f"{title} ({len(rows)})", title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    return table


def _commands(routes: list[str]) -> str:
    from pico.catalog.pipelines import pipeline_info

    return ", ".join(pipeline_info(route).command for route in routes)


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
