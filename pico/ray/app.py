"""The Serve application for a config file: ``import_path: pico.ray.app:build`` (KubeRay RayService, ``serve deploy``).

Front doors (``pico serve --ray HEAD:6379``) then join the application the operator deployed,
instead of deploying their own. ``args`` are PICO settings by field name (``models_dir``,
``threadsmax``, ``max_models``, ``queue``, ``device``, ``replicas``...), over the ``PICO_*``
environment of the replicas' image; the config's own ``deployments:`` section (autoscaling,
``ray_actor_options``) overrides what they imply.
"""

from __future__ import annotations

from typing import Any

from pico.config import Settings


def build(args: dict[str, Any]) -> Any:
    """The engine deployment and its board, as ``pico serve --ray`` deploys them."""
    import ray

    from pico.ray.cluster import replica_resources
    from pico.ray.deployment import build_app

    settings = Settings.load(dict(args or {}))
    resources, replica_settings = replica_resources(settings, ray.cluster_resources())
    return build_app(replica_settings, resources)
