"""Which models a server allows, and where each loads from: the models directory, the hub, or a checkpoint file.

A request's ``Model`` is an org/name id, which resolves to a folder of the models directory (an
offline mirror laid out as ``DIR/org/name``) or, failing that, to the Hugging Face hub through its
cache; or it is the name of a single-file checkpoint in a checkpoint folder (``DIR/checkpoints``,
``--checkpoint-dir``). Its ``Loras`` name files of the LoRA folders. :meth:`ModelResolver.plan`
answers both before any work: what the request's model is, that its route fits it, and which
LoRA files it applies, each fitting the model's family. No torch here.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico.catalog.checkpoint_configs import LOADABLE_FAMILIES
from pico.catalog.families import FAMILY_TABLE, base_family, family_of
from pico.catalog.files import CheckpointFile, LoraFile, ModelFiles
from pico.catalog.files.detect import lora_fits
from pico.catalog.files.folders import PICKLES, SAFETENSORS
from pico.catalog.files.names import TITLE
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
from pico.catalog.pipelines import PIPELINES, PipelineInfo, text_to_image_pipeline
from pico.errors import InvalidRequest, ModelNotAllowed, ModelUnavailable
from pico.schemas.requests import GenerationRequest, Lora, valid_model_id

if TYPE_CHECKING:
    from pico.config import Settings

FAMILY_WORDS = {
    "sd1": "SD 1.x", "sd1-inpaint": "SD 1.x inpainting", "sd2": "SD 2.x", "sd2-inpaint": "SD 2.x inpainting",
    "sdxl": "SDXL", "sdxl-inpaint": "SDXL inpainting", "sdxl-refiner": "SDXL refiner", "sd3": "SD 3.x",
    "flux-dev": "FLUX.1 dev", "flux-schnell": "FLUX.1 schnell", "flux": "FLUX.1", "sd1-variation": "image-variation",
}


@dataclass(frozen=True)
class ModelSource:
    """Where one model id loads from."""

    model_id: str
    location: str  # a folder of the models directory, or a hub repo id
    local: bool
    revision: str | None = None


@dataclass(frozen=True)
class CheckpointSource:
    """A single-file checkpoint a request named; ``file.path`` is for the loader only, never for a response."""

    file: CheckpointFile

    @property
    def model_id(self) -> str:
        """How the checkpoint is shown: its name inside its folder ("sdxl/juggernautXL_v9.safetensors")."""
        return self.file.name


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA file a request applies, and its weights (text encoders, UNet)."""

    file: LoraFile
    weight: float
    unet_weight: float
    field: str = dataclass_field(default="Loras", compare=False)  # where the request named it, for errors

    @property
    def identity(self) -> tuple[str, int, float]:
        """What tells one version of one file from any other: its real path, size and modification time."""
        return (str(self.file.path), self.file.size, self.file.mtime)


@dataclass(frozen=True)
class ModelPlan:
    """What a request's Model and Loras mean on this server, checked against its route."""

    source: ModelSource | CheckpointSource
    family: str | None  # sd1, sd1-inpaint, sd2, sdxl, sdxl-refiner, ... (None: not known before loading)
    loras: tuple[LoraChoice, ...] = ()

    @property
    def name(self) -> str:
        """The model as clients see it: an id (aliases followed) or a checkpoint's name."""
        return self.source.model_id if isinstance(self.source, CheckpointSource) else canonical(self.source.model_id)

    @property
    def checkpoint(self) -> CheckpointFile | None:
        """The checkpoint file, when the model is one."""
        return self.source.file if isinstance(self.source, CheckpointSource) else None


class ModelResolver:
    """Turns model names into sources, refuses what this server does not allow, and finds LoRA files."""

    def __init__(self, models_dir: Path | None, allow: tuple[str, ...] = (), allow_any: bool = False,
                 files: ModelFiles | None = None):
        self.models_dir = models_dir.resolve() if models_dir else None
        self.allow = allow
        self.allow_any = allow_any
        self.files = files
        self._known = (set(DEFAULT_MODELS) | set(KNOWN_FAMILY_MODELS) | set(VAE_MODELS.values()) | set(ALIASES)
                       | set(ALIASES.values()))

    @classmethod
    def for_settings(cls, settings: "Settings") -> "ModelResolver":
        """The resolver of a server or command: the allow-list widened by the models its operator named,
        and the checkpoint and LoRA files of DIR/checkpoints, DIR/loras, --checkpoint-dir and --lora-dir."""
        named = [model_id(name) for name in (*settings.preload, settings.default_model)]
        if settings.sdxl_vae:
            named.append(settings.sdxl_vae)
        files = ModelFiles.for_models_dir(settings.models_root, cache_dir=settings.cache_dir,
                                          extra_checkpoint_dirs=settings.checkpoint_dir,
                                          extra_lora_dirs=settings.lora_dir)
        return cls(settings.models_root, settings.allow_model + tuple(named), settings.allow_any_model, files)

    # ---- Diffusers models ----------------------------------------------------------------------

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
        """Raise ModelNotAllowed (403) naming the model unless :meth:`is_allowed` (checkpoints always are)."""
        if not self.is_allowed(model_id):
            raise ModelNotAllowed(
                f"Model {model_id} is not allowed on this server", field="Model",
                hint="Put it in the models directory, or allow it with --allow-model "
                f"'{model_id}' (globs work) or --allow-any-model.",
            )

    def local_folder(self, model_id: str) -> Path | None:
        """The models-directory folder of ``model_id`` or of another of its names (aliases), if there is one."""
        for name in same_model(model_id):
            folder = self._local_folder(name)
            if folder:
                return folder
        return None

    # ---- any model -----------------------------------------------------------------------------

    def resolve(self, name: str) -> ModelSource | CheckpointSource:
        """The source of a Model: a Diffusers id (models directory first, else the hub) or a checkpoint file.

        Known ids and models-directory folders win; then checkpoint names; then any other org/name id,
        if allowed. Errors: 403 for an id not allowed, 404 for a name nothing has, 422 for a checkpoint
        file that cannot be used (a pickle, broken, unrecognised) or a name several files have.
        """
        if valid_model_id(name) and (name in self._known or self.local_folder(name)):
            return self._diffusers(name)
        missing: ModelUnavailable | None = None
        if self.files is not None:
            try:
                return CheckpointSource(self.files.find_checkpoint(name, "Model"))
            except ModelUnavailable as exc:
                if exc.status != 404:
                    raise
                missing = exc
        if not _may_be_model_id(name):
            raise missing or ModelUnavailable(
                f"Checkpoint {name!r} was not found: this server has no checkpoint folders", status=404,
                hint="Put single-file checkpoints in MODELS_DIR/checkpoints, or add a folder with --checkpoint-dir.")
        if not self.is_allowed(name) and missing is not None and missing.hint and missing.hint.startswith("Did you"):
            raise missing  # a near miss of a checkpoint's name says more than "not allowed"
        return self._diffusers(name)

    def _diffusers(self, name: str) -> ModelSource:
        self.require_allowed(name)
        folder = self.local_folder(name)
        if folder:
            return ModelSource(name, str(folder), True)
        return ModelSource(name, canonical(name), False, REVISIONS.get(name))

    def family(self, name: str) -> str | None:
        """A model's family: a checkpoint's from its header, a local folder's from its configs, else from its id."""
        source = self.resolve(name)
        if isinstance(source, CheckpointSource):
            return source.file.family
        if source.local:
            return folder_family(Path(source.location), name)
        return family_of(name)

    def text_to_image_pipeline(self, name: str) -> PipelineInfo:
        """The text-to-image pipeline whose defaults fit the model named (its family decides)."""
        return text_to_image_pipeline(name, self.family(name))

    def plan(self, request: GenerationRequest, route: str) -> ModelPlan | None:
        """What the request's Model and LoRAs are, refusing before any work what cannot run on ``route``.

        A checkpoint of another family than a text-to-image route draws is a 422 on Model naming the route
        that fits; a LoRA for another family, or one that cannot be used, is a 422 naming the LoRA.
        None for a request that runs no model (Lanczos upscaling): its Model is not looked at.
        """
        if not request.loads_model():
            return None
        source = self.resolve(request.model)
        if isinstance(source, CheckpointSource):
            family = source.file.family
            _check_checkpoint_route(source.file, route)
        elif source.local:
            family = folder_family(Path(source.location), request.model)
        else:
            family = family_of(request.model)
        return ModelPlan(source, family, self.loras(request.lora_set, family, len(request.loras)))

    def loras(self, loras: list[Lora], family: str | None, given: int | None = None) -> tuple[LoraChoice, ...]:
        """The LoRA files named, each checked to fit ``family``; the same file twice is an error.

        The first ``given`` came from the Loras field, the rest from <lora:...> tags in the phrase
        (errors name the field they came from).
        """
        given = len(loras) if given is None else given
        if not loras:
            return ()
        if self.files is None:
            raise ModelUnavailable(f"LoRA {loras[0].name!r} was not found: this server has no LoRA folders",
                                   status=404, field=_lora_field(0, given),
                                   hint="Put LoRA files in MODELS_DIR/loras, or add a folder with --lora-dir.")
        chosen: list[LoraChoice] = []
        for index, lora in enumerate(loras):
            field = _lora_field(index, given)
            file = self.files.find_lora(lora.name.strip(), field)
            if lora_fits(file.family, _lora_family_of_model(family)) is False:
                raise InvalidRequest(
                    f"LoRA {file.name} is for {FAMILY_WORDS.get(file.family, file.family)} models; the model is "
                    f"{FAMILY_WORDS.get(family, family)}", field=field,
                    hint="Pick a LoRA made for this model's family, or a model of the LoRA's family.")
            if any(c.file.path == file.path for c in chosen):
                raise InvalidRequest(f"LoRA {file.name} is applied twice (under two names)", field=field,
                                     hint="Name each LoRA once, with the weight you want.")
            unet = lora.weight if lora.unet_weight is None else lora.unet_weight
            chosen.append(LoraChoice(file, lora.weight, unet, field))
        return tuple(chosen)

    def _local_folder(self, model_id: str) -> Path | None:
        """DIR/org/name when it exists and really lies inside the models directory (no ../, no symlinks out)."""
        if not self.models_dir or "/" not in model_id:
            return None
        folder = (self.models_dir / model_id).resolve()
        if not folder.is_relative_to(self.models_dir) or not folder.is_dir():
            return None
        return folder


def _may_be_model_id(name: str) -> bool:
    """Whether a name not found among the checkpoints can still be an org/name id (not a file name or title)."""
    return (valid_model_id(name) and not name.lower().endswith((SAFETENSORS, *PICKLES))
            and TITLE.fullmatch(name) is None)


def _lora_field(index: int, given: int) -> str:
    """Where a request's LoRA came from, as a field name (tags in the phrase come after the Loras field)."""
    return f"Loras[{index}].Name" if index < given else "Phrase"


def _lora_family_of_model(family: str | None) -> str | None:
    return None if family in (None, "sd1-variation") else family


def _check_checkpoint_route(file: CheckpointFile, route: str) -> None:
    """Refuse a checkpoint on a route it cannot run, naming the route(s) that fit."""
    family = file.family or ""
    name = file.name
    words = FAMILY_WORDS.get(family, family)
    if family not in LOADABLE_FAMILIES:
        raise InvalidRequest(f"Checkpoint {name} is {words}; PICO does not load {words} single-file checkpoints yet",
                             field="Model", hint="Use the model's Diffusers folder (org/name) instead.")
    fits = routes_for_family(family)
    if route in fits:
        return
    info = PIPELINES_BY_ROUTE[route]
    draws = next((r for r in fits if PIPELINES_BY_ROUTE[r].task == "text-to-image"), None)
    if info.task == "text-to-image" and draws:
        raise InvalidRequest(f"Checkpoint {name} is an {words} model; {route} draws with "
                             f"{FAMILY_WORDS.get(info.family or '', info.family)} models", field="Model",
                             hint=f"Use {draws} for it (POST /api/v1/{draws}, pico {PIPELINES_BY_ROUTE[draws].command}).")
    raise InvalidRequest(f"Checkpoint {name} is an {words} model; {route} cannot run it", field="Model",
                         hint=f"Use it with {', '.join(fits)}.")


PIPELINES_BY_ROUTE = {info.route: info for info in PIPELINES}


def routes_for_family(family: str | None) -> list[str]:
    """The routes a model of ``family`` runs on: its family's text-to-image route, image-to-image, inpaint.

    An inpainting model runs on the inpaint route only; a refiner on image-to-image and inpaint; the
    variation and upscaler models on their own route.
    """
    if not family:
        return []
    special = {"sd1-variation": "variation", "upscaler": "upscale"}.get(family)
    if special:
        return [i.route for i in PIPELINES if i.task == special]
    base = base_family(family)
    if base not in FAMILY_TABLE:
        return []
    routes = []
    for info in PIPELINES:
        if info.task == "text-to-image" and info.route == FAMILY_TABLE[base].route and family == base:
            routes.append(info.route)
        elif info.task == "image-to-image" and not family.endswith("-inpaint"):
            routes.append(info.route)
        elif info.task == "inpaint":
            routes.append(info.route)
    return routes


def folder_family(folder: Path, name: str) -> str | None:
    """The family of a Diffusers folder, from its model index and UNet config (the id decides SD 1 from SD 2
    when the widths do not, as in the tiny models)."""
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    unet = _read_json(folder / "unet" / "config.json")
    inpaint = "-inpaint" if unet.get("in_channels") == 9 else ""
    if "ImageVariation" in class_name or ("image_encoder" in index and "text_encoder" not in index):
        return "sd1-variation"
    if "Upscale" in class_name:
        return "upscaler"
    if class_name.startswith("StableDiffusion3"):
        return "sd3"
    if class_name.startswith("Flux"):
        transformer = _read_json(folder / "transformer" / "config.json")
        return "flux-dev" if transformer.get("guidance_embeds") else "flux-schnell"
    if "XL" in class_name:
        text_encoder = index.get("text_encoder")
        if "Img2Img" in class_name and (not isinstance(text_encoder, list) or text_encoder[0] is None):
            return "sdxl-refiner"
        return "sdxl" + inpaint
    width = unet.get("cross_attention_dim")
    base = {768: "sd1", 1024: "sd2"}.get(width) if isinstance(width, int) else None
    return (base or family_of(name)) + inpaint


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
