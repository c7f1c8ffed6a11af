"""One subcommand per pipeline (``pico stable-diffusion-xl "ginger cat"``), built from the catalog.

Each command's parameters come from its request type's fields (see pico.cli.options), so
a new pipeline in the catalog is a new command here with no change to this file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pico.cli.app import app
from pico.cli.inputs import InputImage, read_input
from pico.cli.options import TEXT_LISTS, FieldOption, nest, request_options, with_common
from pico.cli.output import prepare_folder
from pico.cli.session import Session, label_for
from pico.catalog.pipelines import PIPELINES
from pico.schemas.requests import lora_from_text

if TYPE_CHECKING:
    from pico.cli.options import Common
    from pico.catalog.pipelines import PipelineInfo

PANEL = "Generate images"


def build_body(options: list[FieldOption], values: dict[str, Any], request_type: type,
               max_pixels: int) -> tuple[dict[str, Any], list[InputImage]]:
    """The PascalCase request body of the options given (None: not given), and the input images read."""
    from pico.cli.inputs import with_images

    body: dict[str, Any] = {}
    images = []
    for option in options:
        value = values.get(option.param)
        if value is None:
            continue
        if option.image:
            images.append(read_input(value, option.wire, option.flag, request_type, max_pixels))
        elif option.wire in TEXT_LISTS:
            if value:
                body[option.wire] = [lora_from_text(text, option.flag) for text in value]
        else:
            nest(body, option, value)
    return with_images(body, images), images


def run_command(pipeline: PipelineInfo, options: list[FieldOption], values: dict[str, Any], common: Common) -> None:
    """Validate the options as a request, generate it, write the images and print their paths."""
    settings = common.settings()
    body, images = build_body(options, values, pipeline.request_type, settings.max_pixels)
    request = pipeline.request_type.parse(body, max_pixels=settings.max_pixels)
    prepare_folder(common.out)
    with Session(common, settings) as session:
        session.run(pipeline, request, common.out, images, label_for(pipeline, request))


def make_command(pipeline: PipelineInfo, options: list[FieldOption]) -> Callable[..., None]:
    """The command function of one pipeline, with a parameter per request field plus the shared ones."""

    def command(common: Common, **values: Any) -> None:
        run_command(pipeline, options, values, common)

    command.__name__ = pipeline.command.replace("-", "_")
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [option.parameter() for option in options]
        + [inspect.Parameter("common", inspect.Parameter.KEYWORD_ONLY)]
    )
    return with_common(command)


def command_help(pipeline: PipelineInfo, options: list[FieldOption]) -> str:
    """The manual page of a pipeline command: what it does, how files are named, examples."""
    example = [f"pico {pipeline.command}"]
    for option in options:
        if option.flag.isupper():
            example.append('"ginger cat"')
        elif option.image:
            example.append(f"{option.flag} {option.flag.lstrip('-')}.png")
    first = " ".join(example)
    upscale = pipeline.task == "upscale"  # one image, no steps unless the SD x4 model draws it
    more, demo = ("--scale 2", "--demo") if upscale else ("--total 2 --seed 42 --steps 30", "--demo --total 2")
    return (
        f"{pipeline.summary}\n\n"
        f"Writes one PNG per image to --out, named <date>-<time>-{pipeline.command}-<seed>.png. Each file carries "
        "the parameters that made it (pico info FILE) and can be made again, identical (pico again FILE). "
        "Options left out take the defaults shown, the same as in REST requests.\n\n"
        f"Examples:\n\n"
        f"[bold]{first} {more}[/]\n\n"
        f"[bold]{first} {demo}[/]   (tiny offline models: noise)\n\n"
        f"[bold]{first} --quiet --out renders[/]   (prints only the paths)"
    )


def register() -> None:
    """Add one command per pipeline to the app."""
    for pipeline in PIPELINES:
        options = request_options(pipeline.request_type)
        app.command(pipeline.command, help=command_help(pipeline, options), rich_help_panel=PANEL,
                    short_help=pipeline.summary)(make_command(pipeline, options))


register()
