"""Which model ids a server allows, and where each loads from: the models directory or the hub.

A model id resolves to a folder of the models directory (an offline mirror laid out as
``DIR/org/name``) or, failing that, to the Hugging Face hub through its cache.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pico.catalog.models import (
    ALIASES,
    DEFAULT_MODELS,
    KNOWN_FAMILY_MODELS,
    REVISIONS,
    VAE_MODELS,
    canonical,
    model_id,
    same_model,
)
from pico.errors import ModelNotAllowed

if TYPE_CHECKING:
    from pico.config import Settings


@dataclass(frozen=True)
class ModelSource:
    """Where one model id loads from."""

    model_id: str
    location: str  # a folder of the models directory, or a hub repo id
    local: bool
    revision: str | None = None


class ModelResolver:
    """Turns model ids into sources, and refuses ids this server does not allow."""

    def __init__(self, models_dir: Path | None, allow: tuple[str, ...] = (), allow_any: bool = False):
        self.models_dir = models_dir.resolve() if models_dir else None
        self.allow = allow
        self.allow_any = allow_any
        self._known = (set(DEFAULT_MODELS) | set(KNOWN_FAMILY_MODELS) | set(VAE_MODELS.values()) | set(ALIASES)
                       | set(ALIASES.values()))

    @classmethod
    def for_settings(cls, settings: "Settings") -> "ModelResolver":
        """The resolver of a server or command: the allow-list widened by the models its operator named."""
        named = [model_id(name) for name in (*settings.preload, settings.default_model)]
        if settings.sdxl_vae:
            named.append(settings.sdxl_vae)
        return cls(settings.models_root, settings.allow_model + tuple(named), settings.allow_any_model)

    def local_models(self) -> list[str]:
        """The org/name ids of the pipelines in the models directory (standalone VAEs are not listed)."""
        if not self.models_dir or not self.models_dir.is_dir():
            return []
        return [f"{folder.parent.name}/{folder.name}" for folder in sorted(self.models_dir.glob("*/*"))
                if (folder / "model_index.json").is_file()]

    def is_allowed(self, model_id: str) -> bool:
        """Defaults, their aliases and the models directory; --allow-model globs and --allow-any-model widen it."""
        if self.allow_any or model_id in self._known or self._local_folder(model_id):
            return True
        return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in self.allow)

    def require_allowed(self, model_id: str) -> None:
        """Raise ModelNotAllowed (403) naming the model unless :meth:`is_allowed`."""
        if not self.is_allowed(model_id):
            raise ModelNotAllowed(
                f"Model {model_id} is not allowed on this server", field="Model",
                hint="Put it in the models directory, or allow it with --allow-model "
                f"'{model_id}' (globs work) or --allow-any-model.",
            )

    def resolve(self, model_id: str) -> ModelSource:
        """The source of ``model_id``: its models-directory folder (or its alias's), else the hub."""
        self.require_allowed(model_id)
        for name in same_model(model_id):
            folder = self._local_folder(name)
            if folder:
                return ModelSource(model_id, str(folder), True)
        return ModelSource(model_id, canonical(model_id), False, REVISIONS.get(model_id))

    def _local_folder(self, model_id: str) -> Path | None:
        """DIR/org/name when it exists and really lies inside the models directory (no ../, no symlinks out)."""
        if not self.models_dir or "/" not in model_id:
            return None
        folder = (self.models_dir / model_id).resolve()
        if not folder.is_relative_to(self.models_dir) or not folder.is_dir():
            return None
        return folder
