"""``pico info FILE`` shows the parameters an image carries; ``pico again FILE`` makes it again.

A PNG written by PICO embeds {"Pipeline", "Request" (seed pinned to the first image of
its batch), "Metadata" (Index: the image's place in that batch), "Inputs", "Run"}.
Images of one request are generated in one batched call, and a batch of two is not
bit-identical to two batches of one, so ``again`` reruns the whole request as it was
and keeps the image at Metadata.Index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pico.cli.app import app
from pico.cli.inputs import read_file, recorded_input, with_images
from pico.cli.options import Common, JsonLines, with_common
from pico.cli.output import out_console, prepare_folder, say
from pico.cli.session import Session, label_for
from pico.errors import InvalidRequest

PANEL = "Image files and batches"
Files = Annotated[list[Path], typer.Argument(help="Image files written by PICO.", metavar="FILE",
                                             show_default=False)]
File = Annotated[Path, typer.Argument(help="An image file written by PICO (PNG).", metavar="FILE",
                                      show_default=False)]


def embedded_of(path: Path) -> dict[str, Any]:
    """The parameters embedded in an image file: {"pico": dict or None, "parameters": str or None}."""
    from pico.schemas.images import read_parameters

    found = read_parameters(read_file(path, "FILE"))
    if found["pico"] is None and found["parameters"] is None:
        raise InvalidRequest(f"{path} carries no generation parameters", field="FILE",
                             hint="PICO writes them into PNG files only (--format png, the default).")
    return found


INFO_HELP = (
    "Print the generation parameters embedded in images: the request, the seed, the inputs.\n\n"
    "Shows PICO's JSON chunk, and the AUTOMATIC1111-style \"parameters\" text that image browsers show "
    "(also found in images from other tools). With --json, one JSON object per file.\n\n"
    "Examples:\n\n"
    "[bold]pico info pico-out/20261127-143005-stable-diffusion-xl-42.png[/]\n\n"
    "[bold]pico info --json pico-out/*.png | jq .pico.Request.Seed[/]"
)
AGAIN_HELP = (
    "Generate an image again from the parameters embedded in it: same request, same seed, same pixels.\n\n"
    "The whole request runs as it did (all its images, from the pinned first seed) and the image at FILE's place "
    "in it is written to --out under a new name. Input images are read again from their recorded paths and must "
    "be unchanged (their SHA-256 is checked). Images made with --demo are made again with the demo models. The "
    "result is compared with FILE: identical on the same device and library versions.\n\n"
    "Examples:\n\n"
    "[bold]pico again pico-out/20261127-143005-stable-diffusion-xl-42.png[/]\n\n"
    "[bold]pico again old.png --out check --check[/]   (exits 1 unless identical)"
)


@app.command("info", help=INFO_HELP, rich_help_panel=PANEL)
def info(files: Files, json_lines: JsonLines = False) -> None:
    """Print the generation parameters embedded in images."""
    for path in files:
        found = embedded_of(path)
        if json_lines:
            typer.echo(json.dumps({"path": str(path), **found}, ensure_ascii=False))
        else:
            show(path, found)


def show(path: Path, found: dict[str, Any]) -> None:
    """The parameters of one file, as tables on stdout."""
    pico = found["pico"]
    out_console.print(f"[bold]{escape(str(path))}[/]")
    if pico:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="cyan", no_wrap=True)
        table.add_column()
        table.add_row("Pipeline", escape(str(pico.get("Pipeline"))))
        for section in ("Request", "Metadata", "Inputs", "Run"):
            for key, value in (pico.get(section) or {}).items():
                shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                table.add_row(f"{section}.{key}", escape(shown))
        out_console.print(table)
        out_console.print(f"[dim]make it again: pico again {escape(str(path))}[/]")
    if found["parameters"]:
        out_console.print("[cyan]parameters[/] (AUTOMATIC1111 text)")
        out_console.print(escape(found["parameters"]))


@app.command("again", help=AGAIN_HELP, rich_help_panel=PANEL)
@with_common
def again(file: File, check: Annotated[bool, typer.Option(
        "--check", help="Exit with status 1 unless the new image is pixel-identical to FILE.")] = False,
        *, common: Common) -> None:
    """Generate an image again from the parameters embedded in it."""
    from pico.catalog.pipelines import find_pipeline

    pico = embedded_of(file)["pico"]
    if not isinstance(pico, dict) or not isinstance(pico.get("Request"), dict):
        raise InvalidRequest(f"{file} carries no PICO parameters (only AUTOMATIC1111 text), so it cannot be "
                             "made again exactly", field="FILE")
    pipeline = find_pipeline(str(pico.get("Pipeline")))
    run = pico.get("Run") or {}
    settings = common.settings(demo=True if run.get("Demo") else None)
    inputs = [recorded_input(wire, record, pipeline.request_type, settings.max_pixels)
              for wire, record in (pico.get("Inputs") or {}).items()]
    request = pipeline.request_type.parse(with_images(pico["Request"], inputs), max_pixels=settings.max_pixels)
    index = (pico.get("Metadata") or {}).get("Index", 0)
    if not isinstance(index, int) or not 0 <= index < request.total:
        raise InvalidRequest(f"{file} has a damaged Metadata.Index: {index!r}", field="FILE")
    prepare_folder(common.out)
    with Session(common, settings) as session:
        generation = session.generate(pipeline, request, label_for(pipeline, request))
        identical = same_pixels(file, generation.images[index])
        session.save(generation, pipeline, request, common.out, inputs, only=index,
                     extra={"source": str(file), "identical": identical})
    if not identical:
        say(f"[bold yellow]warning:[/] the new image differs from {escape(str(file))} "
            f"(made on {escape(str(run.get('Device', '?')))} with PICO {escape(str(run.get('Pico', '?')))}; "
            "another device or library version changes pixels)")
        if check:
            raise typer.Exit(1)
    elif not common.quiet and not common.json_lines:
        say(f"[green]identical[/] to {escape(str(file))}")


def same_pixels(path: Path, image: Any) -> bool:
    """True when the image in ``path`` has exactly the pixels of ``image``."""
    from PIL import Image, ImageChops

    with Image.open(path) as original:
        first = original.convert("RGB")
    second = image.convert("RGB")
    return first.size == second.size and ImageChops.difference(first, second).getbbox() is None
