"""Walk checkpoint and LoRA folders: which files are there, under which names, and whether the tree changed.

A file is named by its path relative to its folder, with forward slashes on every OS. Symlinks
are followed only while they stay inside the folder; hidden entries and names that are not valid
UTF-8 are skipped. The walk records every directory's mtime, so a later check can tell cheaply
whether anything was added, removed or renamed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("pico")

SAFETENSORS = ".safetensors"
PICKLES = (".ckpt", ".pt", ".bin", ".pth")
MAX_DEPTH = 16


@dataclass(frozen=True)
class Folder:
    """A folder to list, and the label clients see for it instead of its server path."""

    label: str
    root: Path


@dataclass(frozen=True)
class FoundFile:
    """One listed file: its name in the folder, its real path, and its stat at the walk."""

    folder: Folder
    name: str  # relative path with its extension, forward slashes
    path: Path  # the resolved real path, inside the folder
    location: Path  # where it is listed (differs from path for a symlinked file); a .yaml beside it counts
    size: int
    mtime_ns: int

    @property
    def pickle(self) -> bool:
        """True for .ckpt/.pt/.bin/.pth: listed, never opened."""
        return self.path.suffix.lower() in PICKLES or self.name.lower().endswith(PICKLES)

    @property
    def stem(self) -> str:
        """The name without its extension."""
        return self.name[: self.name.rfind(".")] if "." in self.name.rsplit("/", 1)[-1] else self.name


# A signature of the tree: every walked directory's real path -> its mtime (None for a missing root).
Signature = dict[str, int | None]


def walk(folder: Folder, skip_suffixes: tuple[str, ...] = ()) -> tuple[list[FoundFile], Signature]:
    """The .safetensors and pickle files under ``folder`` and the tree's signature."""
    found: list[FoundFile] = []
    signature: Signature = {}
    try:
        root = folder.root.resolve(strict=True)
    except (OSError, RuntimeError):  # Python < 3.13 raises RuntimeError for a symlink loop
        signature[os.fspath(folder.root)] = None
        return found, signature
    if not root.is_dir():
        signature[os.fspath(folder.root)] = None
        return found, signature
    _walk_dir(folder, root, root, "", found, signature, (), skip_suffixes)
    return found, signature


def _walk_dir(folder: Folder, root: Path, directory: Path, prefix: str, found: list[FoundFile],
              signature: Signature, ancestors: tuple[Path, ...], skip: tuple[str, ...]) -> None:
    if directory in ancestors or len(ancestors) > MAX_DEPTH:
        return  # a symlink loop, or absurdly deep
    ancestors = (*ancestors, directory)
    try:
        signature[os.fspath(directory)] = directory.stat().st_mtime_ns
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list a folder in %s: %s", folder.label, exc.strerror)
        return
    for entry in entries:
        name = entry.name
        if name.startswith(".") or not _utf8(name):
            continue
        try:
            target = Path(entry.path).resolve(strict=True) if entry.is_symlink() else Path(entry.path)
            if not target.is_relative_to(root):
                continue  # a symlink out of the folder
            if target.is_dir():
                _walk_dir(folder, root, target, f"{prefix}{name}/", found, signature, ancestors, skip)
                continue
            lower = name.lower()
            if not lower.endswith((SAFETENSORS, *PICKLES)) or lower.endswith(skip) or not target.is_file():
                continue
            stat = target.stat()
        except (OSError, RuntimeError):
            continue  # vanished, a dangling or looping link (RuntimeError before Python 3.13), unreadable
        found.append(FoundFile(folder, prefix + name, target, Path(entry.path), stat.st_size, stat.st_mtime_ns))


def changed(signature: Signature) -> bool:
    """Whether any directory of a walk was modified, appeared or vanished since."""
    for path, mtime in signature.items():
        try:
            now = os.stat(path).st_mtime_ns
        except OSError:
            now = None
        if now != mtime:
            return True
    return False


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # os.fsdecode's surrogate escapes: such a name could not be sent to a client
    return True
