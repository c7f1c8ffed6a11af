"""Options the generating commands share, and request fields turned into options.

Request options are built from the request dataclasses' field specs, so every field of a
pipeline is an option (``GuidanceScale`` -> ``--guidance-scale``) whose help states the
real default and range. All of them default to None, meaning "leave the field out of the
request", so the request's own default applies: one source of defaults, one validation.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pico.cli.app import (
    AllowAnyModel,
    AllowModel,
    CheckpointDir,
    Demo,
    Device,
    LoraDir,
    MaxLoras,
    MaxModels,
    ModelsDir,
    Offload,
    Verbose,
    Xformers,
    load_settings,
)
from pico.config import Settings
from pico.schemas.fields import base_type, number_text, spec_of, wire_fields, wire_name
from pico.schemas.requests import GenerationRequest

DEFAULT_OUT = Path("pico-out")
REQUEST_PANEL = "Request"
OUTPUT_PANEL = "Output"

# Request fields whose option is not simply the kebab-case field name.
OPTION_NAMES = {"NegativePhrase": "negative", "VaeType": "vae", "OutputFormat": "format", "Loras": "lora"}
# List fields given as repeated options of text: --lora NAME[:WEIGHT] (a Loras item each).
TEXT_LISTS = {"Loras": "A LoRA to apply, NAME or NAME:WEIGHT (weight -4 to 4, default 1); repeatable, up to 8. "
                       "<lora:NAME:WEIGHT> in the phrase works too."}
# Image fields: a file path on the command line (--image), a path key in batch files ("Image").
IMAGE_INPUTS = {"ImageBase64": "image", "MaskImageBase64": "mask"}
IMAGE_HELP = {
    "ImageBase64": "The input image file (PNG, JPEG, WebP...).",
    "MaskImageBase64": "The mask image file: white is repainted, black kept; resized to the image's size "
                       "if it differs.",
}
POSITIONAL = {"Phrase"}
FORMAT_NOTE = " Only PNG files carry the generation parameters (pico info, pico again)."

Out = Annotated[Path, typer.Option(
    "--out", "-o", help="Folder for the images, created if missing; existing files are never overwritten.",
    rich_help_panel=OUTPUT_PANEL)]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print only the paths of the images written: no progress, notices or warnings.",
    rich_help_panel=OUTPUT_PANEL)]
JsonLines = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object per image on stdout: path, seed, metadata, warnings.",
    rich_help_panel=OUTPUT_PANEL)]


def kebab(name: str) -> str:
    """``GuidanceScale`` -> ``guidance-scale``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def input_name(wire: str) -> str:
    """The short name of an image field: ``ImageBase64`` -> ``image``, ``MaskImageBase64`` -> ``mask``."""
    return IMAGE_INPUTS.get(wire) or kebab(wire.removesuffix("Base64"))


def batch_key(wire: str) -> str:
    """The file-path key of an image field in a batch job: ``Image``, ``Mask``."""
    return "".join(part.capitalize() for part in input_name(wire).split("-"))


@dataclass(frozen=True)
class FieldOption:
    """One request field as a command-line parameter."""

    wire: str  # the JSON name: GuidanceScale
    param: str  # the Python parameter name: guidance_scale
    flag: str  # --guidance-scale, or PHRASE for the positional argument
    kind: type
    image: bool
    required: bool
    help: str
    parent: str | None = None  # the nested object it belongs to: "Hires" for --hires-scale

    @property
    def positional(self) -> bool:
        """Whether it is the command's argument (the phrase) rather than an option."""
        return self.wire in POSITIONAL and self.parent is None

    def parameter(self) -> inspect.Parameter:
        """The inspect.Parameter Typer reads: an argument or an option, defaulting to None (not given)."""
        if self.positional:
            info: Any = typer.Argument(metavar=self.flag, help=self.help, show_default=False)
            if not self.required:  # the upscale command's phrase may be left out
                return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation=Annotated[self.kind | None, info])
            return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY,
                                     annotation=Annotated[self.kind, info])
        kind = Path if self.image else self.kind
        info = typer.Option(self.flag, help=self.help, show_default=False, rich_help_panel=REQUEST_PANEL,
                            metavar="FILE" if self.image else "NAME[:WEIGHT]" if self.wire in TEXT_LISTS else None)
        if self.required:  # a required image: click reports it missing, before anything runs
            return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, info])
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[kind | None, info])


def request_options(request_type: type) -> list[FieldOption]:
    """Every wire field of a request dataclass as a FieldOption, the positional phrase first."""
    hints = typing.get_type_hints(request_type)
    options = []
    for f in wire_fields(request_type):
        wire = wire_name(f.name)
        spec = spec_of(f)
        kind = base_type(hints[f.name])[0]
        if dataclasses.is_dataclass(kind):
            options += nested_options(wire, kind)
            continue
        if wire in POSITIONAL:
            flag = wire.upper()
        elif spec.image:
            flag = "--" + input_name(wire)
        else:
            flag = "--" + OPTION_NAMES.get(wire, kebab(wire))
        options.append(FieldOption(
            wire=wire, param=f.name, flag=flag, kind=list[str] if wire in TEXT_LISTS else base_type(hints[f.name])[0],
            image=bool(spec.image), required=spec.required,
            help=escape(TEXT_LISTS[wire]) if wire in TEXT_LISTS else field_help(f, wire),
        ))
    shared = {wire_name(f.name) for f in wire_fields(GenerationRequest)}
    options.sort(key=lambda o: (not o.positional, o.wire in shared and o.parent is None))
    return options


def nested_options(parent: str, cls: type) -> list[FieldOption]:
    """A nested object's fields as options of their own: Hires.Scale -> --hires-scale (None: not given)."""
    hints = typing.get_type_hints(cls)
    prefix = kebab(parent)
    return [FieldOption(wire=wire_name(f.name, cls), param=f"{prefix.replace('-', '_')}_{f.name}",
                        flag=f"--{prefix}-{OPTION_NAMES.get(wire_name(f.name, cls), kebab(wire_name(f.name, cls)))}",
                        kind=base_type(hints[f.name])[0], image=False, required=False,
                        help=f"{parent}: " + field_help(f, wire_name(f.name, cls)), parent=parent)
            for f in wire_fields(cls)]


def nest(body: dict[str, Any], option: FieldOption, value: Any) -> None:
    """Put an option's value into a request body, inside its nested object if it has one."""
    if option.parent:
        body.setdefault(option.parent, {})[option.wire] = value
    else:
        body[option.wire] = value


def field_help(f: dataclasses.Field, wire: str) -> str:
    """A field's help: its description, then its choices, range and default in brackets (escaped for rich)."""
    spec = spec_of(f)
    text = IMAGE_HELP.get(wire, spec.description) if spec.image else spec.description
    if wire == "OutputFormat":
        text = "Image file format." + FORMAT_NOTE
    tags = []
    if spec.choices:
        tags.append("choices: " + ", ".join(spec.choices))
    if spec.minimum is not None:
        tags.append(f"range: {number_text(spec.minimum)} to {number_text(spec.maximum)}")
    if spec.multiple_of:
        tags.append(f"multiple of {spec.multiple_of}")
    default = f.default
    if isinstance(default, bool):
        tags.append(f"default: {'on' if default else 'off'}")
    elif default not in (None, "", dataclasses.MISSING):
        tags.append(f"default: {number_text(default) if isinstance(default, float) else default}")
    return escape(" ".join([text, *(f"[{tag}]" for tag in tags)]))


@dataclass(frozen=True)
class Common:
    """The options every generating command takes: where and how to print, and the engine's settings."""

    out: Path = DEFAULT_OUT
    quiet: bool = False
    json_lines: bool = False
    models_dir: Path | None = None
    checkpoint_dir: list[Path] | None = None
    lora_dir: list[Path] | None = None
    max_loras: int | None = None
    device: str | None = None
    offload: str | None = None
    xformers: bool | None = None
    demo: bool | None = None
    max_models: int | None = None
    allow_model: list[str] | None = None
    allow_any_model: bool | None = None
    verbose: bool | None = None

    def settings(self, **overrides: Any) -> Settings:
        """Settings from defaults < PICO_* environment < these flags (and ``overrides`` where not given)."""
        flags = {name: getattr(self, name) for name in _SETTING_FLAGS}
        flags["allow_model"] = tuple(self.allow_model) if self.allow_model else None
        for name in ("checkpoint_dir", "lora_dir"):
            flags[name] = tuple(getattr(self, name)) if getattr(self, name) else None
        flags.update({k: v for k, v in overrides.items() if flags.get(k) is None})
        settings = load_settings(**flags)
        if self.quiet and not settings.verbose:  # --quiet: warnings and errors only
            logging.getLogger("pico").setLevel(logging.WARNING)
        return settings


_SETTING_FLAGS = ("models_dir", "checkpoint_dir", "lora_dir", "max_loras", "device", "offload", "xformers", "demo", "max_models", "allow_model",
                  "allow_any_model", "verbose")


def _common(out: Out = DEFAULT_OUT, quiet: Quiet = False, json_lines: JsonLines = False,
            models_dir: ModelsDir = None, checkpoint_dir: CheckpointDir = None, lora_dir: LoraDir = None,
            max_loras: MaxLoras = None, device: Device = None, offload: Offload = None,
            xformers: Xformers = None, demo: Demo = None, max_models: MaxModels = None,
            allow_model: AllowModel = None, allow_any_model: AllowAnyModel = None, verbose: Verbose = None) -> None:
    """Declares the shared options once; its signature is what with_common appends."""


COMMON_PARAMETERS = [
    p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
    for p in inspect.signature(_common, eval_str=True).parameters.values()
]


def with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared options; it receives them gathered as ``common: Common``."""
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "common"]
    names = [p.name for p in COMMON_PARAMETERS]

    @functools.wraps(func)
    def command(**values: Any) -> Any:
        common = Common(**{name: values.pop(name) for name in names})
        return func(common=common, **values)

    command.__signature__ = inspect.Signature(own + COMMON_PARAMETERS)  # type: ignore[attr-defined]
    command.__annotations__ = {}
    return command
