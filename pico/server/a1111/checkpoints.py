"""A1111's checkpoints and LoRAs: model ids and checkpoint files listed as sd-models, matched by name, switched
by options; LoRA files listed as /sdapi/v1/loras; both rescanned on refresh. No server path is ever shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pico.catalog.files import CheckpointFile
from pico.catalog.models import (
    SD_X4_UPSCALER_MODEL,
    SDXL_REFINER_MODEL,
    SHORT_NAMES,
    VAE_MODELS,
    VARIATION_MODEL,
    canonical,
    model_id,
)
from pico.errors import InvalidRequest, ModelUnavailable, NotFound, PicoError
from pico.schemas.requests import valid_model_id
from pico.server.a1111.schemas import LoraItem, SDModelItem, Txt2ImgRequest

if TYPE_CHECKING:
    from pico.server.service import Service

# In the models directory, but not models A1111's txt2img can run (a refiner is named by refiner_checkpoint).
NOT_CHECKPOINTS = {*VAE_MODELS.values(), VARIATION_MODEL, SDXL_REFINER_MODEL, SD_X4_UPSCALER_MODEL}
DRAWING_FAMILIES = ("sd1", "sd2", "sdxl")  # checkpoint files txt2img can run (inpainting ones serve img2img)


def checkpoints(service: "Service") -> list[str]:
    """Model ids offered as checkpoints: the default model and the models directory's, one name per model."""
    by_model: dict[str, str] = {}
    if valid_model_id(service.default_model):
        by_model[canonical(service.default_model)] = service.default_model
    for name in service.engine.resolver.local_models():
        if name not in NOT_CHECKPOINTS:
            by_model.setdefault(canonical(name), name)
    return sorted(by_model.values(), key=str.lower)


def checkpoint_files(service: "Service") -> list[CheckpointFile]:
    """The usable single-file checkpoints of the checkpoint folders (A1111 lists only what it can load)."""
    files = service.engine.resolver.files
    if files is None:
        return []
    return [f for f in files.checkpoints() if f.status == "ok" and f.family in (*DRAWING_FAMILIES, "sd1-inpaint",
                                                                            "sd2-inpaint", "sdxl-inpaint")]


def checkpoint_items(service: "Service") -> list[SDModelItem]:
    """The sd-models list: model ids (filename is the id too), then checkpoint files as A1111 lists them
    (title "name [hash]" once the hash is known, filename the name inside its folder: no server path)."""
    items = [SDModelItem(title=name, model_name=name.rsplit("/", 1)[-1], filename=name)
             for name in checkpoints(service)]
    files = service.engine.resolver.files
    for file in checkpoint_files(service):
        known = files.known_checkpoint_hash(file)
        items.append(SDModelItem(title=file.title, model_name=file.name.rsplit(".", 1)[0].replace("/", "_"),
                                 filename=file.name, hash=known.shorthash if known else None,
                                 sha256=known.hash if known else None))
    return items


def find_checkpoint(service: "Service", name: str, field: str) -> str:
    """The Model for a checkpoint name: a model id's title (any case), a short name, a checkpoint file's name,
    title, model_name or short hash (ambiguous, or a file that cannot load: 422), or an allowed model id."""
    wanted = name.strip()
    as_id = wanted.removesuffix(".safetensors")
    if as_id.lower() in SHORT_NAMES:
        return model_id(as_id)
    for title in checkpoints(service):
        if as_id.lower() in (title.lower(), title.rsplit("/", 1)[-1].lower()):
            return title
    resolver = service.engine.resolver
    if resolver.files is not None:
        try:
            return resolver.files.find_checkpoint(wanted, field).name
        except ModelUnavailable as exc:
            if exc.status != 404:
                raise _renamed(exc, field) from None
        except PicoError as exc:
            raise _renamed(exc, field) from None
    if valid_model_id(as_id) and resolver.is_allowed(as_id):
        return as_id
    raise NotFound(f"Checkpoint {name!r} not found; available: {', '.join(i.title for i in checkpoint_items(service))}",
                   field=field, hint="GET /sdapi/v1/sd-models lists the checkpoints.")


def _renamed(error: PicoError, field: str) -> PicoError:
    error.field = field
    return error


def current_title(service: "Service") -> str:
    """sd_model_checkpoint as A1111 reports it: the default model's title ("name [hash]" for checkpoint files)."""
    files = service.engine.resolver.files
    model = service.default_model
    if files is None or valid_model_id(model):
        return model
    try:
        return files.find_checkpoint(model, usable=False).title
    except PicoError:
        return model


def checkpoint_for(service: "Service", request: Txt2ImgRequest) -> str:
    """The model of a generation: override_settings.sd_model_checkpoint, else the default model."""
    name = (request.override_settings or {}).get("sd_model_checkpoint")
    if name is None:
        return service.default_model
    if not isinstance(name, str):
        raise InvalidRequest("override_settings.sd_model_checkpoint must be a string", field="override_settings")
    model = find_checkpoint(service, name, "override_settings")
    if not request.override_settings_restore_afterwards:
        service.default_model = model
    return model


def lora_items(service: "Service") -> list[dict[str, Any]]:
    """GET /sdapi/v1/loras: each usable LoRA as A1111's Lora extension lists it (path: the name in its folder)."""
    files = service.engine.resolver.files
    if files is None:
        return []
    items = []
    for lora in files.loras():
        if lora.status != "ok":
            continue
        metadata = files.lora_metadata(lora)
        alias = metadata.get("ss_output_name") or _stem(lora.name)
        items.append(LoraItem(name=_stem(lora.name), alias=alias, path=lora.name, metadata=metadata).to_dict())
    return items


def refresh(service: "Service") -> None:
    """Rescan the checkpoint and LoRA folders now (PICO also notices changes within a second on its own)."""
    files = service.engine.resolver.files
    if files is not None:
        files.refresh()


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base
