"""The PicoResponse and health bodies of the PICO API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from dataclasses_json import DataClassJsonMixin, LetterCase
from dataclasses_json import config as json_config

PASCAL = json_config(letter_case=LetterCase.PASCAL)["dataclasses_json"]


@dataclass
class PicoImage(DataClassJsonMixin):
    """One generated image: the pipeline's Name, the encoded image, and how it was made."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    name: str
    image_base64: str
    metadata: dict[str, Any]


@dataclass
class PicoResponse(DataClassJsonMixin):
    """The body of every successful generation on the PICO API."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    elapsed_seconds: float
    images: list[PicoImage]
    ignored_fields: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Health(DataClassJsonMixin):
    """The health route's body: Idle, or Busy while every generation slot is taken."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    status: str


@dataclass
class JobStatus(DataClassJsonMixin):
    """One generation's state, as the jobs route reports it."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    id: str
    pipeline: str
    state: str  # queued, running, done, failed, cancelled
    step: int
    steps: int
    elapsed_seconds: float
    images: int
    seeds: list[int]
    error: str | None = None
    batch_size: int = 1  # requests that shared this job's pipeline call (dynamic batching)
    steps_per_second: float | None = None  # denoising rate, between the first and the last step


@dataclass
class ReplicaStatus(DataClassJsonMixin):
    """One engine replica of a server on Ray (pico serve --ray)."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    id: str
    node: str
    pid: int
    device: str
    slots: int
    slots_in_use: int
    loaded_models: list[str]


@dataclass
class LoadedModelStatus(DataClassJsonMixin):
    """What one resident model holds: its weights' precision, parameters and bytes, in all and per component."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    model: str
    precision: str
    parameters: int
    bytes: int
    components: dict[str, int]  # component (transformer, text_encoder_2, vae...) -> bytes
    placement: str  # the device, or "cpu, model offload to cuda" with --offload


@dataclass
class ServerStatus(DataClassJsonMixin):
    """The status route's body: slots, queue, loaded models, device and the jobs in flight."""

    dataclass_json_config: ClassVar[dict] = PASCAL

    status: str
    slots_in_use: int
    slots: int
    queue_length: int
    queue_limit: int
    loaded_models: list[str]
    device: str
    version: str
    uptime_seconds: float
    jobs: list[JobStatus]
    replicas: list[ReplicaStatus] = field(default_factory=list)  # with --ray: the engine replicas
    models: list[LoadedModelStatus] = field(default_factory=list)
