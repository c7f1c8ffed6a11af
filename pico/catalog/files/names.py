"""What a client may call a checkpoint or LoRA file, and which listed files a name means.

Names are only ever compared with the names of listed files, never joined onto a server path, so
no name can reach outside a folder; the checks here exist to answer a bad name with a clear 422.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pico.catalog.files.folders import SAFETENSORS, FoundFile
from pico.errors import InvalidRequest

MAX_NAME_LENGTH = 1024
HEX = re.compile(r"[0-9a-fA-F]{8,64}")
TITLE = re.compile(r"(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]")  # A1111: "name.safetensors [a1b2c3d4e5]"
DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Wanted:
    """A parsed name: the file name part and/or a hash (prefix), lowercase hex."""

    name: str | None
    hash: str | None


def parse_name(raw: object, field: str, what: str) -> Wanted:
    """Split a title into name and hash, normalise slashes, and refuse names that try to leave the folder."""
    if not isinstance(raw, str):
        raise InvalidRequest(f"{field} must be a string naming a {what}", field=field)
    text = raw.strip()
    if not text:
        raise InvalidRequest(f"{field} is empty; name a {what}", field=field)
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{field} is {len(text)} characters long; a {what} name has at most {MAX_NAME_LENGTH}",
                             field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidRequest(f"{field} contains a control character; a {what} name cannot", field=field)
    title = TITLE.fullmatch(text)
    if title:
        name, digest = title["name"], title["hash"].lower()
        if not name:
            return Wanted(None, digest)
    else:
        name, digest = text, (text.lower() if HEX.fullmatch(text) else None)
    return Wanted(_clean(name, field, what), digest)


def _clean(name: str, field: str, what: str) -> str:
    name = name.replace("\\", "/")  # A1111 on Windows names files with backslashes
    hint = f"Name a {what} by its path inside its folder, e.g. sdxl/model.safetensors."
    if name.startswith("/") or DRIVE.match(name):
        raise InvalidRequest(f"{field} {show(name)} is an absolute path; {what}s are named inside their folder",
                             field=field, hint=hint)
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(f"{field} {show(name)} has an empty, '.' or '..' part; {what} names stay inside "
                             "their folder", field=field, hint=hint)
    return name


def show(text: object) -> str:
    """A client's name quoted for a message, cut short when long."""
    text = str(text)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def checkpoint_aliases(file: FoundFile) -> tuple[str, ...]:
    """A1111's other checkpoint name: the path without extension, slashes turned to underscores."""
    return (file.stem.replace("/", "_"),)


def lora_aliases(file: FoundFile) -> tuple[str, ...]:
    """A1111's LoRA name, as in <lora:NAME:1>: the file name without its folders, extension optional."""
    return file.stem.rsplit("/", 1)[-1], file.name.rsplit("/", 1)[-1]


def by_name(files: Sequence[FoundFile], name: str,
            aliases: Callable[[FoundFile], tuple[str, ...]]) -> list[FoundFile]:
    """The files a name means: exact path (with or without extension), then any case, then A1111's alias."""
    tiers = (
        lambda f: (f.name, f.stem),
        lambda f: (f.name.casefold(), f.stem.casefold()),
        aliases,
        lambda f: tuple(alias.casefold() for alias in aliases(f)),
    )
    for number, keys in enumerate(tiers):
        wanted = name.casefold() if number % 2 else name
        matches = [f for f in files if wanted in keys(f)]
        if matches:
            loadable = [f for f in matches if f.name.lower().endswith(SAFETENSORS)]
            return loadable or matches  # "model" means model.safetensors when model.ckpt lies beside it
    return []


def suggestions(files: Sequence[FoundFile], name: str, limit: int = 3) -> list[str]:
    """Listed names close to ``name`` (difflib), for a "did you mean" hint."""
    stems = {}
    for file in files:
        stems.setdefault(file.stem.casefold(), file.name)
        stems.setdefault(file.stem.rsplit("/", 1)[-1].casefold(), file.name)
    close = difflib.get_close_matches(name.casefold(), list(stems), n=limit * 2, cutoff=0.6)
    return list(dict.fromkeys(stems[c] for c in close))[:limit]
