"""``pico serve --ray``: today's front door (routes, validation, jobs, metrics) on the cluster's engines."""

from __future__ import annotations

import bottle

from pico.config import Settings


def create_ray_app(settings: Settings) -> bottle.Bottle:
    """Join (or start) the cluster, deploy the engines, and build the app on them.

    ClusterUnavailable (one line, a non-zero exit) when the cluster cannot be reached.
    """
    from pico.ray.backend import RayBackend
    from pico.ray.cluster import connect
    from pico.ray.jobs import ClusterJobs
    from pico.server.app import create_app

    cluster = connect(settings)
    try:
        backend = RayBackend(settings, cluster)
        return create_app(settings, engine=backend, jobs=ClusterJobs(backend, settings))
    except BaseException:
        cluster.close()
        raise
