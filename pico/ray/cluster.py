"""Join (or start) a Ray cluster, deploy PICO's Serve application on it, and leave it again.

``--ray local`` starts a cluster on this machine and shuts it down on exit; ``auto`` or a GCS
``host:port`` join one that runs, as a driver. Ray Client (``ray://``) is refused: it cannot
stream Serve calls, and generations stream their steps back. The first front door deploys the application
(``PICO_RAY_APP``, default ``pico``); later front doors join the running one with its settings.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from pico.config import Settings
from pico.errors import ClusterUnavailable, InvalidRequest, PicoError

log = logging.getLogger("pico")

LOCAL = "local"
NAMESPACE = "pico"
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # results are a few images: a small store keeps /dev/shm free
RUNNING = ("RUNNING", "DEPLOYING")
CONNECT_SECONDS = 5
STOP_SECONDS = 30  # for Serve to stop its replicas (they finish what runs first)
INSTALL_HINT = "Install the extra: pip install 'pico[ray]'"
REACH_HINT = ("Start one with 'ray start --head' and use --ray auto (on a node) or --ray HEAD:6379, "
              "or use --ray local for a cluster on this machine.")


@dataclass
class Cluster:
    """This process's connection to a cluster, and what it started there (to stop on close)."""

    address: str
    app: str
    started: bool  # this process started the cluster (--ray local)
    deployed: bool  # this process deployed the application

    def engine(self) -> Any:
        """A handle to the engine deployment (the application's ingress)."""
        from ray import serve

        return serve.get_app_handle(self.app)

    def board(self) -> Any:
        """A handle to the application's board."""
        from ray import serve

        from pico.ray.deployment import BOARD

        return serve.get_deployment_handle(BOARD, app_name=self.app)

    def close(self, delete_app: bool = False) -> None:
        """Leave the cluster; a cluster this process started is shut down, with no Ray process left behind.

        Serve's own shutdown waits for its controller forever when the cluster is gone (a Ctrl-C
        in a terminal reaches Ray's processes too), so it gets ``STOP_SECONDS``.
        """
        import ray
        from ray import serve

        stop = serve.shutdown if self.started else (lambda: serve.delete(self.app)) if delete_app else None
        if stop is not None:
            worker = threading.Thread(target=_quietly, args=(stop,), name="pico-serve-stop", daemon=True)
            worker.start()
            worker.join(STOP_SECONDS)
            if worker.is_alive():
                log.warning("the Serve application %r did not stop within %ss; leaving it", self.app, STOP_SECONDS)
        ray.shutdown()


def connect(settings: Settings) -> Cluster:
    """Join (or start) the cluster ``settings.ray`` names and make sure the application runs there.

    Raises ClusterUnavailable (one line, for the CLI) when the cluster cannot be reached.
    """
    try:
        import ray
        from ray import serve
    except ImportError:
        raise PicoError("--ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    for name in ("ray", "ray.serve"):
        logging.getLogger(name).setLevel(logging.DEBUG if settings.verbose else logging.WARNING)
    address = settings.ray
    if address.startswith("ray://"):
        raise InvalidRequest(
            f"--ray {address}: Ray Client (ray://) cannot stream Serve calls, which PICO needs for progress and "
            "cancel", field="ray",
            hint="Join as a driver instead: --ray auto on a cluster node, or --ray HOST:6379 (the head's GCS "
                 "address) from a machine that can reach the cluster's nodes.")
    started = address == LOCAL
    options: dict[str, Any] = {"namespace": NAMESPACE, "logging_level": logging.WARNING}
    if started:
        options.update(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    else:
        options["address"] = address
    try:
        if not started:
            _check_reachable(address)  # ray.init itself retries an address that does not answer for minutes
        ray.init(**options)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        raise ClusterUnavailable(f"Cannot reach the Ray cluster at {address}: {_first_line(exc)}",
                                 hint=REACH_HINT) from None
    cluster = Cluster(address, settings.ray_app, started=started, deployed=False)
    try:
        # PICO's own server is the HTTP front door: no Serve proxy; Serve's own logs only when they matter
        serve.start(proxy_location="Disabled",
                    logging_config={"log_level": "INFO" if settings.verbose else "WARNING"})
        if not started and _app_running(settings.ray_app):
            log.info("joined the running Serve application %r on %s (its replicas keep their own settings)",
                     settings.ray_app, address)
        else:
            deploy(settings)
            cluster.deployed = True
    except BaseException:
        cluster.close()
        raise
    return cluster


def deploy(settings: Settings) -> None:
    """Deploy (or update) the application: the engine replicas and the board; returns once they run."""
    import ray
    from ray import serve

    from pico.ray.deployment import build_app

    resources, replica_settings = replica_resources(settings, ray.cluster_resources())
    replicas = (f"{settings.min_replicas} to {settings.max_replicas} replicas" if settings.max_replicas
                else f"{settings.replicas} replica(s)")
    log.info("deploying %s on Ray (%s each, %d slot(s) per replica)", replicas,
             ", ".join(f"{k.removeprefix('num_')}={v:g}" for k, v in resources.items()), settings.threadsmax)
    try:
        serve.run(build_app(replica_settings, resources), name=settings.ray_app, route_prefix=None, blocking=False)
    except Exception as exc:  # noqa: BLE001 - a replica that cannot start: say why in one line
        raise PicoError(f"The Serve application {settings.ray_app!r} did not start: {_first_line(exc)}",
                        hint="The replicas' log is in the Ray session folder (logs/serve/).") from None


def replica_resources(settings: Settings, cluster: dict[str, float]) -> tuple[dict[str, float], Settings]:
    """What each replica asks Ray for, and the settings replicas run with.

    One GPU per replica when the device is CUDA (or auto on a cluster with GPUs); otherwise an
    equal share of the cluster's CPUs among the most replicas there may be.
    """
    gpus = cluster.get("GPU", 0)
    if settings.device.startswith("cuda") or (settings.device == "auto" and gpus >= 1):
        if gpus < 1 and settings.device.startswith("cuda"):
            log.warning("--device %s: the cluster has no GPU now; replicas wait for one (an autoscaler may add it)",
                        settings.device)
        return {"num_gpus": 1, "num_cpus": 1}, settings.replace(device="cuda")  # Ray picks the replica's GPU
    if settings.device == "mps":
        raise InvalidRequest("--device mps cannot be shared by Ray replicas; use cpu or cuda with --ray",
                             field="device")
    most = max(settings.replicas, settings.max_replicas)
    return {"num_cpus": max(1, int(cluster.get("CPU", 1) // most))}, settings


def _check_reachable(address: str) -> None:
    """Fail within seconds when nothing listens at the cluster's address (``auto``: the one Ray recorded)."""
    from ray._private.services import canonicalize_bootstrap_address  # auto: RAY_ADDRESS, or the last cluster

    target = canonicalize_bootstrap_address(address) or ""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # an address form Ray knows and this check does not: let Ray judge it
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
        pass


def _app_running(app: str) -> bool:
    from ray import serve

    status = serve.status().applications.get(app)
    return status is not None and str(getattr(status.status, "value", status.status)) in RUNNING


def _quietly(stop) -> None:
    try:
        stop()
    except Exception as exc:  # noqa: BLE001 - leaving anyway
        log.warning("could not stop the Serve application: %s", _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
