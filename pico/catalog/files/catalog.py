"""Checkpoint and LoRA files on disk: listed, named, recognised and hashed, without loading them.

``ModelFiles`` lists the ``.safetensors`` files of the checkpoint folders (``DIR/checkpoints``,
A1111's ``models/Stable-diffusion``, ComfyUI's ``models/checkpoints``) and the LoRA folders
(``DIR/loras``, ``models/Lora``, ``models/loras``), tells each file's family from its header,
finds a file by the names A1111 clients use, and hashes files as A1111 does. Pickle files are
listed as refused and never opened. Folders are rescanned when they change, so a file added while
the server runs is there on the next request. Nothing here imports torch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from pico.catalog.files import names
from pico.catalog.files.folders import PICKLES, FoundFile
from pico.catalog.files.hashes import CHECKPOINT_SHORTHASH_LENGTH, LORA_SHORTHASH_LENGTH, HashCache
from pico.catalog.files.inventory import Entry, Inventory, Snapshot, make_folders
from pico.catalog.files.safetensors_header import BrokenFile, read_header
from pico.errors import InvalidRequest, ModelUnavailable


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file as clients know it; ``path`` is for the loader only, never for a response."""

    name: str  # path inside its folder, with extension, forward slashes: "sdxl/juggernautXL_v9.safetensors"
    title: str  # A1111's "name [shorthash]" once the hash is known, else the name
    path: Path = dataclass_field(repr=False)
    folder_label: str
    size: int
    mtime: float
    family: str | None  # "sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint", "sdxl-refiner", ...
    prediction: str | None  # "epsilon" or "v" when the file or its .yaml says so; None: the family's default
    status: str  # "ok", "refused" (a pickle), "broken" (unreadable header), "unrecognised" (unknown layout)
    reason: str | None  # why, when status is not "ok"


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file as clients know it; ``path`` is for the loader only."""

    name: str  # path inside its folder, with extension: "style/ink.safetensors"
    path: Path = dataclass_field(repr=False)
    size: int
    mtime: float
    family: str | None  # "sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux"; None when nothing tells
    rank: int | None  # the largest down/A matrix rank
    status: str
    reason: str | None
    folder_label: str = ""


@dataclass(frozen=True)
class FileHash:
    """A1111's hash of a file and its short form (10 hex digits for checkpoints, 12 for LoRAs)."""

    hash: str
    shorthash: str


class ModelFiles:
    """The checkpoint and LoRA files of some folders; safe to call from many threads."""

    def __init__(self, checkpoint_dirs: Iterable[Path | tuple[str, Path]], lora_dirs: Iterable[Path | tuple[str, Path]],
                 cache_dir: Path | None = None, *, recheck_seconds: float = 1.0, clock=time.monotonic):
        self._inventory = Inventory(make_folders(checkpoint_dirs), make_folders(lora_dirs))
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._hashes = HashCache(cache_dir)
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked_at = -math.inf

    @property
    def scans(self) -> int:
        """How many times the folders were walked (for tests and the status page)."""
        return self._inventory.scans

    @classmethod
    def for_models_dir(cls, models_dir: Path | None, cache_dir: Path | None = None,
                       extra_checkpoint_dirs: Sequence[Path] = (), extra_lora_dirs: Sequence[Path] = (),
                       **options) -> ModelFiles:
        """``DIR/checkpoints`` and ``DIR/loras`` (ComfyUI's names) plus extra folders taken as they are."""
        checkpoint_dirs = ([models_dir / "checkpoints"] if models_dir else []) + list(extra_checkpoint_dirs)
        lora_dirs = ([models_dir / "loras"] if models_dir else []) + list(extra_lora_dirs)
        return cls(checkpoint_dirs, lora_dirs, cache_dir, **options)

    # ---- listing ---------------------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointFile]:
        """Every checkpoint file, whatever its status, in A1111's natural order."""
        return [self._checkpoint(entry) for entry in self._current().checkpoints]

    def loras(self) -> list[LoraFile]:
        """Every LoRA file, whatever its status, in natural order."""
        return [self._lora(entry) for entry in self._current().loras]

    def refresh(self) -> None:
        """Rescan every folder now (new, removed and changed files), without waiting for the next check."""
        with self._lock:
            self._snapshot = self._inventory.scan()
            self._checked_at = self._clock()

    # ---- finding ---------------------------------------------------------------------------------

    def find_checkpoint(self, name: object, field: str = "Model", *, usable: bool = True) -> CheckpointFile:
        """The checkpoint a client means: its path in its folder (extension optional, any case if unambiguous),
        A1111's title "name [shorthash]" or model name, or a known hash (prefix of 8+ hex digits).

        Raises InvalidRequest (422) for a malformed or ambiguous name, ModelUnavailable 404 for an unknown one,
        and, when ``usable``, ModelUnavailable 422 for a refused, broken or unrecognised file.
        """
        entry = self._find(self._current().checkpoints, name, field, "checkpoint", names.checkpoint_aliases)
        if usable:
            _require_usable(entry, field, "Checkpoint")
        return self._checkpoint(entry)

    def find_lora(self, name: object, field: str = "Lora", *, usable: bool = True) -> LoraFile:
        """The LoRA a client means: its path in its folder (extension optional), A1111's <lora:NAME> file name,
        or a known hash (prefix of 8+ hex digits; 12 are A1111's short form). Errors as for checkpoints."""
        entry = self._find(self._current().loras, name, field, "LoRA", names.lora_aliases)
        if usable:
            _require_usable(entry, field, "LoRA")
        return self._lora(entry)

    # ---- hashes ----------------------------------------------------------------------------------

    def checkpoint_hash(self, file: CheckpointFile) -> FileHash:
        """SHA-256 of the whole file (A1111's checkpoint hash); read once per file version, ever."""
        _refuse_pickle(file)
        return _short(self._hash_file("sha256", file.path, file.name, "Checkpoint"), CHECKPOINT_SHORTHASH_LENGTH)

    def lora_hash(self, file: LoraFile) -> FileHash:
        """A1111's LoRA hash: the sshs_model_hash metadata when the file states one, else the addnet hash."""
        _refuse_pickle(file)
        stated = self._stated_hash(file.path)
        return _short(stated or self._hash_file("addnet", file.path, file.name, "LoRA"), LORA_SHORTHASH_LENGTH)

    def unhashed_checkpoints(self) -> list[CheckpointFile]:
        """The usable checkpoint files whose A1111 hash is not known yet (new, or changed since hashed)."""
        return [self._checkpoint(entry) for entry in self._current().checkpoints
                if entry.status not in ("refused", "broken") and self._known(entry, "sha256") is None]

    def hash_checkpoints(self) -> int:
        """Hash every checkpoint not hashed yet (a 7 GB file takes seconds, once: the result is kept on disk),
        so listings show A1111's hashes and a short hash finds its file; returns how many were hashed."""
        hashed = 0
        for file in self.unhashed_checkpoints():
            try:
                self._hashes.hash("sha256", file.path)
                hashed += 1
            except OSError:  # removed or unreadable since the scan: the next listing says so
                continue
        return hashed

    def known_checkpoint_hash(self, file: CheckpointFile) -> FileHash | None:
        """The checkpoint's hash if it was computed before (this run or an earlier one), without reading the file."""
        entry = self._entry(self._current().checkpoints, file.path)
        value = self._known(entry, "sha256") if entry else None
        return _short(value, CHECKPOINT_SHORTHASH_LENGTH) if value else None

    def known_lora_hash(self, file: LoraFile) -> FileHash | None:
        """The LoRA's hash if stated in its metadata or computed before, without reading the file."""
        entry = self._entry(self._current().loras, file.path)
        value = self._known(entry, "addnet") if entry else None
        return _short(value, LORA_SHORTHASH_LENGTH) if value else None

    def lora_metadata(self, file: LoraFile) -> dict[str, str]:
        """The LoRA's safetensors metadata (kohya's ss_* keys, ...), without the cover images A1111 drops too."""
        _refuse_pickle(file)
        try:
            metadata = dict(read_header(file.path).metadata)
        except BrokenFile:
            return {}
        metadata.pop("ssmd_cover_images", None)
        return metadata

    # ---- internals -------------------------------------------------------------------------------

    def _current(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            if self._snapshot is None:
                self._snapshot, self._checked_at = self._inventory.scan(), now
            elif now - self._checked_at >= self.recheck_seconds:
                self._checked_at = now
                if self._snapshot.changed():
                    self._snapshot = self._inventory.scan()
            return self._snapshot

    def _find(self, entries: Sequence[Entry], raw: object, field: str, what: str, aliases) -> Entry:
        wanted = names.parse_name(raw, field, what)
        by_file = {e.found: e for e in entries}
        files = [e.found for e in entries]
        kind = "sha256" if what == "checkpoint" else "addnet"
        matches: list[FoundFile] = []
        if wanted.name is not None:
            matches = names.by_name(files, wanted.name, aliases)
            if len(matches) > 1 and wanted.hash:  # a title's hash tells same-named files apart
                narrowed = [f for f in matches if (self._hash_now(by_file[f], kind) or "").startswith(wanted.hash)]
                matches = narrowed or matches
        if not matches and wanted.hash:
            matches = [f for f in files if (self._known(by_file[f], kind) or "").startswith(wanted.hash)]
        if not matches:
            raise self._not_found(files, raw, wanted, field, what)
        if len(matches) > 1:
            raise self._ambiguous([by_file[f] for f in matches], raw, field, what, kind)
        return by_file[matches[0]]

    def _known(self, entry: Entry, kind: str) -> str | None:
        if entry.status == "refused":
            return None
        if kind == "addnet" and entry.stated_hash:
            return entry.stated_hash
        return self._hashes.known(kind, entry.found.path, entry.found.size, entry.found.mtime_ns)

    def _hash_now(self, entry: Entry, kind: str) -> str | None:
        if entry.status == "refused":
            return None
        if kind == "addnet" and entry.stated_hash:
            return entry.stated_hash
        try:
            return self._hashes.hash(kind, entry.found.path)
        except OSError:
            return None

    def _hash_file(self, kind: str, path: Path, name: str, what: str) -> str:
        try:
            return self._hashes.hash(kind, path)
        except OSError as exc:
            raise ModelUnavailable(f"{what} {name} can no longer be read ({exc.strerror or type(exc).__name__})",
                                   status=404, hint="It was removed or changed; list the files again.") from exc

    def _stated_hash(self, path: Path) -> str | None:
        entry = self._entry(self._current().loras, path)
        return entry.stated_hash if entry else None

    @staticmethod
    def _entry(entries: Sequence[Entry], path: Path) -> Entry | None:
        return next((e for e in entries if e.found.path == path), None)

    def _not_found(self, files: Sequence[FoundFile], raw: object, wanted: names.Wanted, field: str,
                   what: str) -> ModelUnavailable:
        close = names.suggestions(files, wanted.name) if wanted.name else []
        if close:
            hint = "Did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif wanted.name is None:
            hint = f"No {what} with a known hash starts with {wanted.hash}; name the {what} by its file name."
        else:
            hint = (f"No {what} file has that name ({len(files)} listed); a {what} is named by its path inside its "
                    "folder, with or without .safetensors.")
        return ModelUnavailable(f"{_capital(what)} {names.show(raw)} was not found", status=404, field=field,
                                hint=hint)

    def _ambiguous(self, entries: Sequence[Entry], raw: object, field: str, what: str, kind: str) -> InvalidRequest:
        length = CHECKPOINT_SHORTHASH_LENGTH if kind == "sha256" else LORA_SHORTHASH_LENGTH
        described = []
        for entry in entries:
            known = self._known(entry, kind)
            described.append(f"{entry.found.name} in {entry.found.folder.label}"
                             + (f" [{known[:length]}]" if known else ""))
        return InvalidRequest(
            f"{_capital(what)} {names.show(raw)} matches "
            f"{len(entries)} files: " + "; ".join(described), field=field,
            hint=f"Give the {what}'s path inside its folder in its exact case, or add its short hash as A1111's "
                 "titles do ('name.safetensors [shorthash]'), or rename one of the files.",
        )

    def _checkpoint(self, entry: Entry) -> CheckpointFile:
        found, detection = entry.found, entry.detection
        known = self._known(entry, "sha256")
        return CheckpointFile(
            name=found.name, title=f"{found.name} [{known[:CHECKPOINT_SHORTHASH_LENGTH]}]" if known else found.name,
            path=found.path, folder_label=found.folder.label, size=found.size, mtime=found.mtime_ns / 1e9,
            family=detection.family if detection else None, prediction=detection.prediction if detection else None,
            status=entry.status, reason=entry.reason,
        )

    def _lora(self, entry: Entry) -> LoraFile:
        found, detection = entry.found, entry.detection
        return LoraFile(
            name=found.name, path=found.path, size=found.size, mtime=found.mtime_ns / 1e9,
            family=detection.family if detection else None, rank=detection.rank if detection else None,
            status=entry.status, reason=entry.reason, folder_label=found.folder.label,
        )


def _require_usable(entry: Entry, field: str, what: str) -> None:
    """Refused, broken and unrecognised files are listed, but a request for one gets the reason (422)."""
    if entry.status == "ok":
        return
    hints = {
        "refused": "Use a .safetensors file.",
        "broken": "Replace the file (download it again); the others in the list still work.",
        "unrecognised": ("PICO loads SD 1.x, SD 2.x and SDXL checkpoint files (SD 3.x and FLUX.1 from their Diffusers "
                         "folders)." if what == "Checkpoint" else
                         "PICO reads LoRAs for SD 1.x, SD 2.x, SDXL, SD 3.x and FLUX.1."),
    }
    raise ModelUnavailable(f"{what} {entry.found.name} cannot be used: {entry.reason}", status=422, field=field,
                           hint=hints.get(entry.status))


def _capital(word: str) -> str:
    return word[:1].upper() + word[1:]


def _refuse_pickle(file: CheckpointFile | LoraFile) -> None:
    """Refused files are never opened, not even to hash them (a programming error if asked)."""
    if file.status == "refused" or file.name.lower().endswith(PICKLES):
        raise ValueError(f"{file.name} is a pickle file; PICO never opens those")


def _short(value: str, length: int) -> FileHash:
    return FileHash(hash=value, shorthash=value[:length])
