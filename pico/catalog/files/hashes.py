"""AUTOMATIC1111's file hashes, computed once per file version and remembered across restarts.

A checkpoint's hash is the SHA-256 of the whole file (A1111's "Model hash" shows its first 10
hex digits). A LoRA's is the kohya "addnet" hash: the SHA-256 of the bytes after the safetensors
header, so editing the metadata does not change it (A1111's "Lora hashes" show 12 hex digits).
Hashes are kept by (path, size, mtime) in memory and in a small JSON file, so a 7 GB checkpoint
is read once ever; a file that changes is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from pico.catalog.files.safetensors_header import header_length

log = logging.getLogger("pico")

CHECKPOINT_SHORTHASH_LENGTH = 10
LORA_SHORTHASH_LENGTH = 12
CHUNK_BYTES = 1 << 20
CACHE_FILE = "file-hashes.json"
CACHE_VERSION = 1
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_of_file(path: str | os.PathLike) -> str:
    """SHA-256 of the whole file, streamed in 1 MiB chunks (A1111's checkpoint hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def addnet_hash_of_file(path: str | os.PathLike) -> str:
    """SHA-256 of everything after the 8-byte length and the JSON header (kohya's and A1111's LoRA hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(8 + header_length(file.read(8)))
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


HASHERS: dict[str, Callable[[str | os.PathLike], str]] = {"sha256": sha256_of_file, "addnet": addnet_hash_of_file}


class HashCache:
    """Hashes by kind and real path, valid while the file's size and mtime are unchanged; thread-safe."""

    def __init__(self, cache_dir: Path | None):
        self.file = Path(cache_dir) / CACHE_FILE if cache_dir else None
        self._entries: dict[str, dict] = self._read()
        self._lock = threading.Lock()
        self._computing: dict[str, threading.Lock] = {}

    def known(self, kind: str, path: Path, size: int, mtime_ns: int) -> str | None:
        """The remembered hash of this version of the file, or None."""
        with self._lock:
            entry = self._entries.get(_key(kind, path))
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime_ns:
            value = entry.get("hash")
            return value if isinstance(value, str) and SHA256_HEX.fullmatch(value) else None
        return None

    def hash(self, kind: str, path: Path) -> str:
        """The file's hash, computed at most once per version even when many threads ask at once."""
        key = _key(kind, path)
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            before = os.stat(path)
            cached = self.known(kind, path, before.st_size, before.st_mtime_ns)
            if cached:
                return cached
            value = HASHERS[kind](path)
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                self._remember(key, {"size": after.st_size, "mtime_ns": after.st_mtime_ns, "hash": value})
            return value

    def _remember(self, key: str, entry: dict) -> None:
        with self._lock:
            self._entries[key] = entry
            if self.file is not None:
                self._write(key, entry)

    def _read(self) -> dict[str, dict]:
        if self.file is None or not self.file.is_file():
            return {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            entries = data["entries"] if data.get("version") == CACHE_VERSION else {}
            return {k: v for k, v in entries.items() if isinstance(v, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring the unreadable hash cache %s (%s); files will be hashed again", self.file, exc)
            return {}

    def _write(self, key: str, entry: dict) -> None:
        """Merge into what is on disk (another process may have added hashes) and replace it atomically."""
        self._entries = {**self._read(), **self._entries, key: entry}
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.file.parent, prefix=".file-hashes-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"version": CACHE_VERSION, "entries": self._entries}, out, indent=1, sort_keys=True)
                os.replace(temp, self.file)
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)
        except OSError as exc:
            log.warning("could not save the hash cache %s (%s); hashes stay in memory", self.file, exc)


def _key(kind: str, path: Path) -> str:
    return f"{kind}:{os.fspath(path)}"
