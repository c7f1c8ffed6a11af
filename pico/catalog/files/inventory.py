"""What the folders hold right now: every file inspected once per version, in a snapshot rebuilt on change.

A scan walks the folders and reads the header of each new or changed ``.safetensors`` file (and the
``.yaml`` beside a checkpoint); files seen before keep their inspection. Pickle files are listed
as refused without being opened. The snapshot remembers how to tell that it is out of date.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pico.catalog.files.detect import Detection, detect_checkpoint, detect_lora
from pico.catalog.files.folders import Folder, FoundFile, Signature, changed, walk
from pico.catalog.files.safetensors_header import BrokenFile, read_header

log = logging.getLogger("pico")

MAX_YAML_BYTES = 1 << 20
NOT_CHECKPOINTS = (".vae.safetensors", ".vae.ckpt", ".vae.pt")  # A1111 keeps VAEs out of its checkpoint list
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    """A listed file and what its header said."""

    found: FoundFile
    status: str  # "ok", "refused", "broken", "unrecognised"
    detection: Detection | None = None
    reason: str | None = None
    stated_hash: str | None = None  # a LoRA's sshs_model_hash metadata, which A1111 takes as its hash


@dataclass(frozen=True)
class Snapshot:
    """The files of every folder at one scan, in natural order."""

    checkpoints: tuple[Entry, ...]
    loras: tuple[Entry, ...]
    signature: Signature
    unfinished: tuple[FoundFile, ...]  # broken files, rechecked too: a copy in progress looks truncated

    def changed(self) -> bool:
        """Whether a folder changed, or a broken file grew or was rewritten (a copy finishing leaves folders alone)."""
        return changed(self.signature) or any(_stat(f.path) != (f.size, f.mtime_ns) for f in self.unfinished)


class Inventory:
    """Scans folders into snapshots, reusing the inspection of files that did not change. Not thread-safe."""

    def __init__(self, checkpoint_folders: tuple[Folder, ...], lora_folders: tuple[Folder, ...]):
        self.checkpoint_folders = checkpoint_folders
        self.lora_folders = lora_folders
        self._order = {folder: n for n, folder in enumerate(checkpoint_folders + lora_folders)}
        self._inspected: dict[tuple, Entry] = {}
        self.scans = 0

    def scan(self) -> Snapshot:
        """Walk every folder; headers are read only for files new or changed since the last scan."""
        self.scans += 1
        signature: Signature = {}
        inspected: dict[tuple, Entry] = {}
        lists = []
        for folders, kind, skip in ((self.checkpoint_folders, "checkpoint", NOT_CHECKPOINTS),
                                    (self.lora_folders, "lora", ())):
            entries = []
            for folder in folders:
                found, folder_signature = walk(folder, skip)
                signature.update(folder_signature)
                for file in found:
                    yaml_stamp = _stat(_yaml_path(file)) if kind == "checkpoint" else None
                    key = (kind, file.path, file.size, file.mtime_ns, yaml_stamp)
                    inspected[key] = self._inspected.get(key) or inspect(file, kind)
                    entries.append(inspected[key])
            entries.sort(key=lambda e: (natural(e.found.name), self._order[e.found.folder]))
            lists.append(tuple(entries))
        self._inspected = inspected
        unfinished = tuple(e.found for e in (*lists[0], *lists[1]) if e.status == "broken")
        return Snapshot(checkpoints=lists[0], loras=lists[1], signature=signature, unfinished=unfinished)


def inspect(file: FoundFile, kind: str) -> Entry:
    """One file's status and detection ("checkpoint" or "lora"); a pickle is never opened."""
    if file.pickle:
        return Entry(file, "refused", reason=refused_reason(file.name))
    try:
        header = read_header(file.path)
    except BrokenFile as exc:
        return Entry(file, "broken", reason=exc.reason)
    if kind == "checkpoint":
        detection = detect_checkpoint(header, yaml_beside(file))
        return Entry(file, detection.status, detection, detection.reason)
    detection = detect_lora(header)
    stated = header.metadata.get("sshs_model_hash", "").strip().lower()
    return Entry(file, detection.status, detection, detection.reason,
                 stated_hash=stated if SHA256.fullmatch(stated) else None)


def refused_reason(name: str) -> str:
    """Why a pickle file is not loaded, and the one-time conversion that fixes it."""
    base = name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0]
    return (
        f"{name} is a pickle file; unpickling can run any code, so PICO never opens .ckpt/.pt/.bin/.pth files. "
        "Convert it to .safetensors once, on a machine you trust: python -c \"import torch, safetensors.torch as st; "
        f"d = torch.load('{base}', map_location='cpu', weights_only=True); d = d.get('state_dict', d); "
        "st.save_file({k: v.clone().contiguous() for k, v in d.items() if isinstance(v, torch.Tensor)}, "
        f"'{stem}.safetensors')\" (or save it as safetensors with A1111's Checkpoint Merger or ComfyUI's "
        "Save Checkpoint node), then put the .safetensors file here."
    )


def make_folders(dirs: Iterable[Path | tuple[str, Path]]) -> tuple[Folder, ...]:
    """Folders with labels clients may see: a given label, else the folder's own name, made unique."""
    folders: list[Folder] = []
    roots: set[str] = set()
    for item in dirs:
        label, root = item if isinstance(item, tuple) else (Path(item).name or "models", item)
        root = Path(root).expanduser()
        real = os.path.realpath(root)
        if real in roots:
            continue  # the same folder given twice
        roots.add(real)
        unique, n = label, 2
        while any(f.label == unique for f in folders):
            unique, n = f"{label}-{n}", n + 1
        folders.append(Folder(unique, root))
    return tuple(folders)


def natural(name: str) -> tuple:
    """A1111's sort: digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", name)  # text, digits, text, digits, ...: the odd places are numbers
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts))


def yaml_beside(file: FoundFile) -> Mapping | None:
    """The LDM config A1111 reads from ``<name>.yaml`` beside a checkpoint; None when absent or unusable."""
    try:
        real = _yaml_path(file).resolve(strict=True)
        if not real.is_relative_to(file.folder.root.resolve()) or real.stat().st_size > MAX_YAML_BYTES:
            return None
        import yaml  # only when a checkpoint has a config beside it

        config = yaml.safe_load(real.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except Exception as exc:  # unreadable, not UTF-8, not YAML (yaml.YAMLError), too deep: as if absent
        log.warning("ignoring the unreadable config beside %s: %s", file.name, type(exc).__name__)
        return None
    return config if isinstance(config, Mapping) else None


def _yaml_path(file: FoundFile) -> Path:
    return file.location.with_suffix(".yaml")


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
