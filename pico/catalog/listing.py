"""What a server or command can run, as one listing: Diffusers models, checkpoint files, LoRA files.

``GET /api/v1/models`` and ``pico models`` show the same data. Built from the catalog without
loading anything or reading a whole file (hashes appear once known); never shows a server path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pico.catalog.checkpoint_configs import LOADABLE_FAMILIES
from pico.catalog.families import family_of
from pico.catalog.models import DEFAULT_MODELS, SD1_INPAINT_MODEL, SD_X4_UPSCALER_MODEL, VARIATION_MODEL, canonical
from pico.catalog.resolver import FAMILY_WORDS, ModelResolver, folder_family, routes_for_family

KNOWN_FAMILIES = {canonical(SD1_INPAINT_MODEL): "sd1-inpaint", canonical(VARIATION_MODEL): "sd1-variation",
                  canonical(SD_X4_UPSCALER_MODEL): "upscaler"}


def kind_of(family: str | None) -> str:
    """What a model of ``family`` does: text-to-image, inpainting, variation, refiner or upscaler."""
    if not family:
        return "unknown"
    if family == "upscaler":
        return "upscaler"
    if family.endswith("-inpaint"):
        return "inpainting"
    if family.endswith("-variation"):
        return "variation"
    if family.endswith("-refiner"):
        return "refiner"
    return "text-to-image"


def models_listing(resolver: ModelResolver, loaded: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """{"Models": [...], "Checkpoints": [...], "Loras": [...]}; ``loaded`` (a server's) adds "Loaded" flags."""
    names: dict[str, str] = {}
    for name in (*DEFAULT_MODELS, *resolver.local_models()):
        names.setdefault(canonical(name), name)
    models = []
    for name in sorted(names.values(), key=str.lower):
        folder = resolver.local_folder(name)
        family = folder_family(folder, name) if folder else KNOWN_FAMILIES.get(canonical(name), family_of(name))
        entry = {"Id": name, "Kind": kind_of(family), "Family": family, "Local": folder is not None,
                 "Pipelines": routes_for_family(family)}
        if loaded is not None:
            entry["Loaded"] = loaded(name)
        models.append(entry)
    files = resolver.files
    checkpoints, loras = [], []
    if files is not None:
        for file in files.checkpoints():
            known = files.known_checkpoint_hash(file) if file.status != "refused" else None
            status, reason = file.status, file.reason
            if status == "ok" and file.family not in LOADABLE_FAMILIES:
                words = FAMILY_WORDS.get(file.family or "", file.family)
                status, reason = "unsupported", (f"PICO does not load {words} single-file checkpoints yet; "
                                                 "use the model's Diffusers folder")
            usable = status == "ok"
            entry = {"Name": file.name, "Title": file.title, "Folder": file.folder_label, "Family": file.family,
                     "Kind": kind_of(file.family) if usable else None, "Prediction": file.prediction,
                     "Size": file.size, "Hash": known.shorthash if known else None, "Status": status,
                     "Reason": reason, "Pipelines": routes_for_family(file.family) if usable else []}
            if loaded is not None:
                entry["Loaded"] = usable and loaded(file.name)
            checkpoints.append(entry)
        for lora in files.loras():
            known = files.known_lora_hash(lora) if lora.status != "refused" else None
            loras.append({"Name": lora.name, "Alias": Path(lora.name).stem, "Folder": lora.folder_label,
                          "Family": lora.family, "Rank": lora.rank, "Size": lora.size,
                          "Hash": known.shorthash if known else None, "Status": lora.status, "Reason": lora.reason})
    return {"Models": models, "Checkpoints": checkpoints, "Loras": loras}
