"""What every route shares: the settings, the engine, the jobs, and the default model of the client APIs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pico.backend import Backend
from pico.catalog.models import model_id
from pico.config import Settings
from pico.errors import InvalidRequest
from pico.jobs import Jobs
from pico.schemas.requests import check_model_name


@dataclass
class Service:
    """What the routes share: settings, the engine and the job slots."""

    settings: Settings
    engine: Backend  # a local Engine, or the cluster's RayBackend
    jobs: Jobs
    started: float = field(default_factory=time.time)
    default_model: str = ""  # for the OpenAI and A1111 routes; A1111's options can switch it
    a1111_options: dict[str, Any] = field(default_factory=dict)  # A1111 settings clients wrote (a1111/options.py)

    def __post_init__(self) -> None:
        self.default_model = self.default_model or model_id(self.settings.default_model)
        try:
            check_model_name(self.default_model, "default-model")
        except InvalidRequest:
            raise InvalidRequest(f"--default-model must be sd15, sd2, sdxl, an org/name model id or a checkpoint's "
                                 f"name, got {self.settings.default_model!r}", field="default-model") from None
