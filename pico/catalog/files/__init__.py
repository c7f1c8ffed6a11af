"""Checkpoint and LoRA files on disk: found, named, recognised from their headers and hashed, never unpickled."""

from pico.catalog.files.catalog import CheckpointFile, FileHash, LoraFile, ModelFiles

__all__ = ["CheckpointFile", "FileHash", "LoraFile", "ModelFiles"]
