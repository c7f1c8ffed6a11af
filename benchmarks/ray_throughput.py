"""pico serve --ray: throughput of one versus two replicas, and what the Ray path adds to a request.

Each run starts a local Ray cluster with one CPU per replica (so every replica computes on one
core), puts ``pico serve --ray`` in front of it, and keeps every replica busy with
``--clients`` concurrent clients per replica. The added latency compares sequential requests
through the embedded server (``pico serve``, which computes on all cores but one: one core here
on a two-core machine) with the same requests through one replica. On a host with GPUs, pass
``--device cuda --replicas 1 2 4 8`` for images/s per GPU count (a replica per GPU).

    python benchmarks/ray_throughput.py [--replicas 1 2] [--requests 60] [--steps 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Server, machine, summary, table, tiny_models, write_results  # noqa: E402

GIB = 2**30


def body(steps: int) -> dict:
    return {"Phrase": "ginger cat", "Steps": steps, "Width": 64, "Height": 64, "Seed": 1}


def alternating(servers: list[Server], steps: int, repeat: int) -> list[list[float]]:
    """Seconds per request on each server, one request at a time, taking turns (so load drift hits both alike)."""
    timings: list[list[float]] = [[] for _ in servers]
    for round_ in range(repeat + 3):
        for index, server in enumerate(servers):
            started = time.perf_counter()
            status, _, reply = server.request("POST", "/api/v1/stable-diffusion", body(steps))
            assert status == 200, reply[:300]
            if round_ >= 3:  # the first ones warm up
                timings[index].append(time.perf_counter() - started)
    return timings


def throughput(server: Server, steps: int, clients: int, requests: int) -> float:
    """Images per second with ``clients`` clients sending ``requests`` requests in all."""
    left = [requests]
    lock = threading.Lock()
    failures: list[int] = []

    def client() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            status, _, _ = server.request("POST", "/api/v1/stable-diffusion", body(steps))
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    assert not failures, failures
    return requests / seconds


def path_overhead(models: Path, device: str, address: str, repeat: int) -> dict:
    """Milliseconds a call spends outside the engine's own generation, through a local Engine and through Ray.

    The difference is what the Ray path adds, free of how fast the generation itself ran (on a
    crowded CPU, Ray's own processes slow the generation down too; that is not counted here).
    """
    from pico.catalog.pipelines import find_pipeline
    from pico.config import Settings
    from pico.pipelines.engine import Engine
    from pico.ray.backend import RayBackend
    from pico.ray.cluster import Cluster

    settings = Settings(models_dir=models, device=device, ray=address)
    request = find_pipeline("stable-diffusion").request_type.parse(body(2), 2048 * 2048)
    cluster = Cluster(address, "pico", started=False, deployed=False)  # this process joined it already
    engines = {"local": Engine(settings.replace(ray="")), "ray": RayBackend(settings, cluster)}
    outside: dict[str, list[float]] = {name: [] for name in engines}
    for round_ in range(repeat + 3):
        for name, engine in engines.items():
            started = time.perf_counter()
            generation = engine.generate(request)
            if round_ >= 3:
                outside[name].append(time.perf_counter() - started - generation.elapsed)
    return {name: summary(values) for name, values in outside.items()}


def on_ray(models: Path, replicas: int, device: str, args: argparse.Namespace) -> dict:
    """Throughput (and, with one replica, sequential latency) through pico serve --ray on a fresh cluster."""
    import ray
    from ray import serve

    temp = tempfile.mkdtemp(prefix="pico-bench-ray-", dir="/tmp")
    resources = {"num_gpus": replicas} if device == "cuda" else {}
    context = ray.init(num_cpus=replicas if device == "cpu" else None, object_store_memory=GIB // 2,
                       include_dashboard=False, _temp_dir=temp, **resources)
    try:
        flags = ["--ray", context.address_info["gcs_address"], "--replicas", str(replicas), "--queue", "64",
                 "--models-dir", str(models), "--device", device]
        with Server(*flags) as server:
            throughput(server, args.steps, replicas * args.clients, 4 * replicas)  # every replica loads the model
            result = {"replicas": replicas,
                      "images_per_s": throughput(server, args.steps, replicas * args.clients, args.requests)}
            if replicas == 1:
                result["path_overhead"] = path_overhead(models, device, context.address_info["gcs_address"],
                                                        args.repeat)
                with Server("--models-dir", str(models), "--device", device) as embedded:
                    result["latency"] = {}
                    for steps in (2, 20):
                        local, remote = alternating([embedded, server], steps, args.repeat)
                        result["latency"][steps] = {"embedded": summary(local), "ray": summary(remote)}
        return result
    finally:
        serve.shutdown()
        ray.shutdown()


def in_child(function, *args):
    """``function(*args)`` in a fresh process: Ray starts a second cluster badly in a process that used Serve."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--requests", type=int, default=60, help="requests per throughput run")
    parser.add_argument("--clients", type=int, default=2, help="concurrent clients per replica")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per throughput request")
    parser.add_argument("--repeat", type=int, default=30, help="sequential requests per latency run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every replica count (the best is reported)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    models = tiny_models()

    runs = [in_child(on_ray, models, replicas, args.device, args) for _ in range(args.rounds)
            for replicas in args.replicas]

    best = {n: max(run["images_per_s"] for run in runs if run["replicas"] == n) for n in args.replicas}
    base = best[args.replicas[0]]
    rows = [[n, round(best[n], 2), f"{best[n] / base:.2f}x"] for n in args.replicas]
    markdown = "Throughput (tiny SD 1, 64x64, {} steps, {} clients per replica, {}; best of {} rounds):\n\n".format(
        args.steps, args.clients, args.device, args.rounds) + table(["Replicas", "Images/s", "Speed-up"], rows)
    latencies = [run["latency"] for run in runs if "latency" in run]
    if latencies:
        latency_rows = []
        for steps in (2, 20):
            embedded = min(lat[steps]["embedded"]["p50_ms"] for lat in latencies)
            ray_path = min(lat[steps]["ray"]["p50_ms"] for lat in latencies)
            latency_rows.append([steps, embedded, ray_path, ray_path - embedded])
        markdown += ("\n\nAdded latency of the Ray path at one replica (sequential requests taking turns, p50 ms, "
                     "best round):\n\n") + table(["Steps", "Embedded", "Ray, 1 replica", "Added"], latency_rows)
    overheads = [run["path_overhead"] for run in runs if "path_overhead" in run]
    if overheads:
        local = min(o["local"]["p50_ms"] for o in overheads)
        remote = min(o["ray"]["p50_ms"] for o in overheads)
        markdown += ("\n\nTime outside the generation itself (p50 ms, 2 steps, best round): local Engine "
                     f"{local:.1f}, Ray path {remote:.1f}: the Ray path adds {remote - local:.1f} ms per request.")
    write_results("ray-throughput", {"machine": machine(), "runs": runs}, markdown, args.out)


if __name__ == "__main__":
    main()
