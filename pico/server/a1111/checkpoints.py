"""A1111's checkpoints: PICO's model ids listed as sd-models, matched by name, switched by options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pico.errors import InvalidRequest, NotFound
from pico.catalog.models import (
    SD_X4_UPSCALER_MODEL,
    SDXL_REFINER_MODEL,
    SHORT_NAMES,
    VAE_MODELS,
    VARIATION_MODEL,
    canonical,
    model_id,
)
from pico.schemas import fields
from pico.schemas.requests import valid_model_id
from pico.server.a1111.schemas import OptionsUpdate, SDModelItem, Txt2ImgRequest
from pico.server.http import read_json_body

if TYPE_CHECKING:
    from pico.server.service import Service

# In the models directory, but not models A1111's txt2img can run (a refiner is named by refiner_checkpoint).
NOT_CHECKPOINTS = {*VAE_MODELS.values(), VARIATION_MODEL, SDXL_REFINER_MODEL, SD_X4_UPSCALER_MODEL}


def checkpoints(service: "Service") -> list[str]:
    """Model ids offered as checkpoints: the default model and the models directory's, one name per model."""
    by_model: dict[str, str] = {canonical(service.default_model): service.default_model}
    for name in service.engine.resolver.local_models():
        if name not in NOT_CHECKPOINTS:
            by_model.setdefault(canonical(name), name)
    return sorted(by_model.values(), key=str.lower)


def checkpoint_items(service: "Service") -> list[SDModelItem]:
    """The sd-models list; filename is the model id too, so no server path leaks."""
    return [SDModelItem(title=name, model_name=name.rsplit("/", 1)[-1], filename=name)
            for name in checkpoints(service)]


def find_checkpoint(service: "Service", name: str, field: str) -> str:
    """The model id for a checkpoint name: a title or model_name (any case), a short name, or an allowed id."""
    wanted = name.strip().removesuffix(".safetensors")
    if wanted.lower() in SHORT_NAMES:
        return model_id(wanted)
    for item in checkpoint_items(service):
        if wanted.lower() in (item.title.lower(), item.model_name.lower()):
            return item.title
    if valid_model_id(wanted) and service.engine.resolver.is_allowed(wanted):
        return wanted
    raise NotFound(f"Checkpoint {name!r} not found; available: {', '.join(checkpoints(service))}", field=field,
                   hint="GET /sdapi/v1/sd-models lists the checkpoints.")


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


def set_options(service: "Service") -> None:
    """Apply sd_model_checkpoint (switching the default model); A1111 answers null."""
    update = fields.parse(OptionsUpdate, read_json_body(service))
    if update.sd_model_checkpoint is not None:
        service.default_model = find_checkpoint(service, update.sd_model_checkpoint, "sd_model_checkpoint")
