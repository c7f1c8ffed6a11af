"""``GET /api/v1/models``: the models, checkpoint files and LoRA files this server can run, and the routes each serves.

Built from the catalog (``pico.catalog.listing``: default ids, the models directory, the checkpoint
and LoRA folders) without loading anything or showing a server path: each Diffusers model and each
checkpoint with its kind, family and routes and whether it is loaded; each LoRA with its family and
rank; files that cannot be used with the reason. Also the pipelines with their default models, and
the samplers, for clients that build forms (the playground).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bottle

from pico.catalog.listing import models_listing
from pico.catalog.pipelines import PIPELINES
from pico.catalog.samplers import SCHEDULER_NAMES
from pico.server.http import send_json
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

TAG = "PICO API"
ENTRY = {"type": "object"}
SCHEMA = {
    "type": "object",
    "required": ["Models", "Checkpoints", "Loras", "Pipelines", "Samplers"],
    "properties": {
        "Models": {"type": "array", "items": ENTRY,
                   "description": "Diffusers models: Id, Kind, Family, Local, Loaded, Pipelines (the routes it serves)"},
        "Checkpoints": {"type": "array", "items": ENTRY,
                        "description": "Single-file checkpoints: Name (what Model takes), Title (A1111's), Folder, "
                                       "Family, Kind, Prediction, Size, Hash, Status, Reason, Pipelines, Loaded"},
        "Loras": {"type": "array", "items": ENTRY,
                  "description": "LoRA files: Name (what Loras[].Name takes), Alias, Folder, Family, Rank, Size, Hash, "
                                 "Status, Reason"},
        "Pipelines": {"type": "array", "items": ENTRY,
                      "description": "Route, Name, Task, Family, Summary, DefaultModel"},
        "Samplers": {"type": "array", "items": {"type": "string"}},
    },
}


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add ``GET /api/v1/models``."""
    app.route("/api/v1/models", "GET", lambda: send_json(model_list(service)), doc=RouteDoc(
        "The models, single-file checkpoints and LoRA files this server can run, each with its family and the "
        "routes it serves; the pipelines with their default models; the samplers", TAG, response=SCHEMA))


def model_list(service: "Service") -> dict[str, Any]:
    """The body of ``GET /api/v1/models``."""
    listing = models_listing(service.engine.resolver, service.engine.is_loaded)
    pipelines = [{"Route": info.route, "Name": info.name, "Task": info.task, "Family": info.family,
                  "Summary": info.summary,
                  "DefaultModel": info.request_type.__dataclass_fields__["model"].default}
                 for info in PIPELINES]
    return {**listing, "Pipelines": pipelines, "Samplers": list(SCHEDULER_NAMES)}
