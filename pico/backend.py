"""What the transports call to generate: a local ``Engine`` or the Ray cluster's ``RayBackend``.

Torch-free: the server and the CLI type against this, and a test holds both implementations to it,
so a method added to one is never missing from the other.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

from pico.catalog.resolver import ModelPlan, ModelResolver
from pico.schemas.requests import GenerationRequest
from pico.schemas.results import Generation, StepCallback


class Backend(Protocol):
    """The generation side of PICO as the routes and commands see it."""

    resolver: ModelResolver

    @property
    def device(self) -> str:
        """Where generations run, for logs and the status route."""

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> Generation:
        """Generate the images of one request."""

    def generate_batch(self, requests: list[GenerationRequest], on_step: StepCallback | None = None,
                       on_preview: Callable | None = None) -> list[Generation]:
        """Generate several requests that share a batch key in one call."""

    def plan(self, request: GenerationRequest, route: str) -> ModelPlan | None:
        """What a request's Model and LoRAs are, refusing what cannot run on ``route`` before it queues."""

    def batch_key(self, request: GenerationRequest) -> tuple | None:
        """What a request must share with others to run in one call (None: it runs alone)."""

    def is_loaded(self, model: str) -> bool:
        """Whether ``model`` is resident."""

    def loaded_models(self) -> list[str]:
        """The resident models."""

    def load_times(self) -> dict[str, float]:
        """Seconds each resident model took to load."""

    def device_memory(self) -> tuple[int, int] | None:
        """CUDA memory allocated (now, peak); None without CUDA."""

    def model_status(self) -> list[dict[str, Any]]:
        """What each resident model holds, for /api/v1/status."""

    def replicas(self) -> list[dict[str, Any]]:
        """The cluster's replicas (none for a local engine)."""

    def warm_up(self, models: Iterable[str]) -> None:
        """Load and warm ``models`` before the first request."""

    def leave_a_core_free(self) -> None:
        """Keep one CPU core for the server's own threads."""

    def close(self) -> None:
        """Release the device or leave the cluster."""
