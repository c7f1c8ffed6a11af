"""The Typer app, the options every command shares, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from pico.config import DEVICES_HELP, OFFLOAD_MODES, Settings
from pico.errors import PicoError

err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, even in CI logs
VERBOSE = {"on": False}


class PicoGroup(TyperGroup):
    """Runs a subcommand and turns a PicoError into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PicoError as exc:
            report_error(exc)
            sys.exit(exc.exit_code)


def report_error(exc: PicoError) -> None:
    """Print a PicoError as the CLI shows it: the message, a hint, a traceback only when verbose."""
    if VERBOSE["on"]:
        err_console.print(traceback.format_exc(), markup=False, highlight=False)
    err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.hint:
        err_console.print(f"[dim]hint:[/] {exc.hint}", highlight=False)


app = typer.Typer(
    cls=PicoGroup,
    name="pico",
    help=(
        "PICO runs Diffusers image pipelines (Stable Diffusion 1.x, 2.x and XL: text-to-image, "
        "image-to-image, image variation, inpainting) from the shell and as a REST server.\n\n"
        "Try it without any model download: pico serve --demo (tiny random models; images are noise)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Options shared by the generation commands and serve. Each also reads PICO_<NAME>.
ModelsDir = Annotated[Optional[Path], typer.Option(
    "--models-dir", help="Offline model mirror: a request for org/name loads DIR/org/name. \\[env: PICO_MODELS_DIR]",
    show_default=False, rich_help_panel="Models and device")]
Device = Annotated[Optional[str], typer.Option(
    "--device", help=f"Where to run: {DEVICES_HELP}. \\[default: auto] \\[env: PICO_DEVICE]",
    show_default=False, rich_help_panel="Models and device")]
Offload = Annotated[Optional[str], typer.Option(
    "--offload", help=f"CPU offload for small GPUs: {', '.join(OFFLOAD_MODES)}. "
    "\\[default: none] \\[env: PICO_OFFLOAD]",
    show_default=False, rich_help_panel="Models and device")]
Xformers = Annotated[Optional[bool], typer.Option(
    "--xformers", help="Use xformers attention when installed (CUDA only). \\[env: PICO_XFORMERS]",
    show_default=False, rich_help_panel="Models and device")]
Demo = Annotated[Optional[bool], typer.Option(
    "--demo", help="Use tiny random-weight demo models for every default model id: no download, images are noise. "
    "\\[env: PICO_DEMO]", show_default=False, rich_help_panel="Models and device")]
MaxModels = Annotated[Optional[int], typer.Option(
    "--max-models", help="Models kept loaded at once (least recently used goes first). \\[default: 2] "
    "\\[env: PICO_MAX_MODELS]", show_default=False, rich_help_panel="Models and device")]
AllowModel = Annotated[Optional[list[str]], typer.Option(
    "--allow-model", help="Also allow requests to load models matching this glob (repeatable), e.g. 'myorg/*'. "
    "\\[env: PICO_ALLOW_MODEL, comma-separated]", show_default=False, rich_help_panel="Models and device")]
AllowAnyModel = Annotated[Optional[bool], typer.Option(
    "--allow-any-model", help="Allow requests to load any model from the hub (safetensors only). "
    "\\[env: PICO_ALLOW_ANY_MODEL]", show_default=False, rich_help_panel="Models and device")]
Verbose = Annotated[Optional[bool], typer.Option(
    "--verbose", "-v", help="Show tracebacks and error details. \\[env: PICO_VERBOSE]", show_default=False)]


def load_settings(**flags: Any) -> Settings:
    """Settings from defaults < environment < these flags; sets up logging and demo models."""
    settings = Settings.load(flags)
    VERBOSE["on"] = settings.verbose
    setup_logging(settings.verbose)
    if settings.demo:
        prepare_demo(settings)
    return settings


def prepare_demo(settings: Settings) -> None:
    """Write the tiny demo models (once) and say loudly that they draw noise."""
    from pico.pipelines.tiny import write_tiny_models

    folder = settings.models_root
    err_console.print(
        f"[bold yellow]demo mode:[/] tiny random-weight models from {folder}; "
        "every image is [bold]noise[/], by design. Use --models-dir or the hub for real models.",
        highlight=False,
    )
    write_tiny_models(folder)


def setup_logging(verbose: bool) -> None:
    """Log to stderr: rich when attached to a terminal, plain lines otherwise."""
    root = logging.getLogger("pico")
    if root.handlers:
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=verbose)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def main() -> None:
    """Entry point of the ``pico`` command."""
    app()


@app.callback()
def _root() -> None:
    """PICO: Diffusers image pipelines from the shell and as a REST server."""
