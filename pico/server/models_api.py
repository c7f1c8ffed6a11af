"""``GET /api/v1/models``: the Diffusers models, checkpoint files and LoRA files this server can run.

Each entry says what it is (family, kind), the routes it serves and whether it is loaded; files
carry their name inside their folder, the folder's label, size, A1111 hash once known, and why a
file cannot be used (a pickle, broken, unrecognised). Nothing is loaded to answer; no server path
is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bottle

from pico.catalog.listing import models_listing
from pico.server.http import send_json
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

TAG = "PICO API"
ENTRY = {"type": "object"}
SCHEMA = {
    "type": "object",
    "required": ["Models", "Checkpoints", "Loras"],
    "properties": {
        "Models": {"type": "array", "items": ENTRY,
                   "description": "Diffusers models: Id, Kind, Family, Local, Loaded, Pipelines"},
        "Checkpoints": {"type": "array", "items": ENTRY,
                        "description": "Single-file checkpoints: Name, Title, Folder, Family, Kind, Prediction, Size, "
                                       "Hash, Status, Reason, Pipelines, Loaded"},
        "Loras": {"type": "array", "items": ENTRY,
                  "description": "LoRA files: Name, Alias, Folder, Family, Rank, Size, Hash, Status, Reason"},
    },
}


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add ``GET /api/v1/models``."""
    app.route("/api/v1/models", "GET", lambda: send_json(models_listing(service.engine.resolver,
                                                                        service.engine.is_loaded)),
              doc=RouteDoc("The models, checkpoint files and LoRA files this server can run, and the routes each "
                           "serves", TAG, response=SCHEMA))
