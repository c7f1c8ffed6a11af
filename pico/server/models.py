"""``GET /api/v1/models``: the models this server can run, what each one is, and the routes it serves.

Built from the catalog (default ids, the models directory, the pipeline table, the samplers)
without loading anything: a model's kind comes from its ``model_index.json`` and UNet config
when it is in the models directory, else from its id. ``Loras`` is empty until LoRA files are
served; clients hide their LoRA controls while it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from pico.catalog.families import family_of
from pico.catalog.models import DEFAULT_MODELS, SD1_INPAINT_MODEL, VARIATION_MODEL, canonical
from pico.catalog.pipelines import PIPELINES
from pico.catalog.samplers import SCHEDULER_NAMES
from pico.server.http import send_json
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

TAG = "PICO API"
TASK_OF_KIND = {"text-to-image": ("text-to-image", "image-to-image", "inpaint"), "inpainting": ("inpaint",),
                "variation": ("variation",)}


@dataclass(frozen=True)
class ModelKind:
    """What a model is, told from its files or its id."""

    kind: str  # text-to-image, inpainting or variation
    family: str  # sd1, sd2 or sdxl


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add ``GET /api/v1/models``."""
    app.route("/api/v1/models", "GET", lambda: send_json(model_list(service)), doc=RouteDoc(
        "The models this server can run (default ids and the models directory), each with its kind, family and "
        "the routes it serves; the pipelines with their default models; the samplers; the LoRAs", TAG,
        response={"type": "object", "required": ["Models", "Pipelines", "Samplers", "Loras"]}))


def model_list(service: "Service") -> dict[str, Any]:
    """The body of ``GET /api/v1/models``."""
    resolver = service.engine.resolver
    names: dict[str, str] = {}
    for name in (*DEFAULT_MODELS, *resolver.local_models()):
        names.setdefault(canonical(name), name)
    models = []
    for name in sorted(names.values(), key=str.lower):
        source = resolver.resolve(name)
        kind = model_kind(name, Path(source.location) if source.local else None)
        models.append({
            "Id": name, "Kind": kind.kind, "Family": kind.family, "Local": source.local,
            "Loaded": service.engine.is_loaded(name), "Pipelines": routes_for(kind),
        })
    pipelines = [{"Route": info.route, "Name": info.name, "Task": info.task, "Family": info.family,
                  "Summary": info.summary,
                  "DefaultModel": info.request_type.__dataclass_fields__["model"].default}
                 for info in PIPELINES]
    return {"Models": models, "Pipelines": pipelines, "Samplers": list(SCHEDULER_NAMES), "Loras": []}


def routes_for(kind: ModelKind) -> list[str]:
    """The PICO routes a model of this kind serves (text-to-image: its family's route)."""
    tasks = TASK_OF_KIND[kind.kind]
    return [info.route for info in PIPELINES
            if info.task in tasks and (info.task != "text-to-image" or info.family == kind.family)]


def model_kind(model: str, folder: Path | None) -> ModelKind:
    """A model's kind and family: from its Diffusers folder when there is one, else from its id."""
    family = family_of(model)
    if folder is None:
        known = {canonical(SD1_INPAINT_MODEL): "inpainting", canonical(VARIATION_MODEL): "variation"}
        return ModelKind(known.get(canonical(model), "text-to-image"), family)
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if "XL" in class_name:
        family = "sdxl"
    if "ImageVariation" in class_name or ("image_encoder" in index and "text_encoder" not in index):
        return ModelKind("variation", family)
    unet = _read_json(folder / "unet" / "config.json")
    if unet.get("in_channels") == 9 or "Inpaint" in class_name:
        return ModelKind("inpainting", family)
    return ModelKind("text-to-image", family)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
