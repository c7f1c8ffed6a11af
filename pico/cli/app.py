"""The Typer app, the options every command shares, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from pico.config import DEVICES_HELP, OFFLOAD_MODES, Settings, env_name
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
    if exc.detail:  # the shell's user runs the machine: what the library said is theirs to see
        err_console.print(f"[dim]detail:[/] {escape(exc.detail)}", highlight=False)


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

def flag(*names: str, help: str, default: str | None = None, panel: str | None = None, many: bool = False,
         metavar: str | None = None) -> Any:
    """A typer.Option whose help ends with its default and the PICO_* variable that also sets it."""
    env = env_name(names[0].lstrip("-").replace("-", "_"))
    separator = f"'{os.pathsep}'-separated" if names[0].endswith("-dir") else "comma-separated"
    tail = (f" \\[default: {default}]" if default else "") + f" \\[env: {env}{', ' + separator if many else ''}]"
    return typer.Option(*names, help=help + tail, show_default=False, rich_help_panel=panel, metavar=metavar)


# Options shared by the generation commands and serve.
MODELS = "Models and device"
ModelsDir = Annotated[Optional[Path], flag(
    "--models-dir", help="Offline model mirror: a request for org/name loads DIR/org/name; single-file checkpoints "
    "in DIR/checkpoints, LoRAs in DIR/loras.", panel=MODELS)]
CheckpointDir = Annotated[Optional[list[Path]], flag(
    "--checkpoint-dir", help="A folder of single-file checkpoints (A1111's models/Stable-diffusion, ComfyUI's "
    "models/checkpoints), besides MODELS_DIR/checkpoints; repeatable.", panel=MODELS, many=True, metavar="DIR")]
LoraDir = Annotated[Optional[list[Path]], flag(
    "--lora-dir", help="A folder of LoRA files (A1111's models/Lora, ComfyUI's models/loras), besides "
    "MODELS_DIR/loras; repeatable.", panel=MODELS, many=True, metavar="DIR")]
MaxLoras = Annotated[Optional[int], flag(
    "--max-loras", help="LoRAs kept loaded per model (least recently used goes first).", default="8", panel=MODELS)]
Device = Annotated[Optional[str], flag(
    "--device", help=f"Where to run: {DEVICES_HELP}.", default="auto", panel=MODELS)]
Offload = Annotated[Optional[str], flag(
    "--offload", help=f"CPU offload for small GPUs: {', '.join(OFFLOAD_MODES)}.", default="none", panel=MODELS)]
Xformers = Annotated[Optional[bool], flag(
    "--xformers", help="Use xformers attention when installed (CUDA only).", panel=MODELS)]
Demo = Annotated[Optional[bool], flag(
    "--demo", help="Use tiny random-weight demo models for every default model id: no download, images are noise.",
    panel=MODELS)]
MaxModels = Annotated[Optional[int], flag(
    "--max-models", help="Models kept loaded at once (least recently used goes first).", default="2", panel=MODELS)]
AllowModel = Annotated[Optional[list[str]], flag(
    "--allow-model", help="Also allow requests to load models matching this glob (repeatable), e.g. 'myorg/*'.",
    panel=MODELS, many=True)]
AllowAnyModel = Annotated[Optional[bool], flag(
    "--allow-any-model", help="Allow requests to load any model from the hub (safetensors only).", panel=MODELS)]
Verbose = Annotated[Optional[bool], flag("--verbose", "-v", help="Show tracebacks and error details.")]


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
