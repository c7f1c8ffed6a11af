"""Throughput with 1, 2, 4 and 8 concurrent clients, with and without dynamic batching.

Each client sends the same kind of text-to-image request (each with its own seed) back to
back for a fixed time against a live `pico serve`.

    python benchmarks/batching.py [--seconds 20] [--steps 20] [--window-ms 50] [--models-dir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Server, machine, table, tiny_models, write_results  # noqa: E402

CLIENTS = (1, 2, 4, 8)


def throughput(server: Server, clients: int, seconds: float, body: dict) -> dict:
    """Images per second and request latency with ``clients`` clients sending back to back."""
    seeds = itertools.count()
    done: list[float] = []
    failures = [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = server.post("/api/v1/stable-diffusion", {**body, "Seed": next(seeds)}).status
            if status == 200:
                done.append(time.perf_counter() - started)
            else:
                failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {"clients": clients, "images_per_s": len(done) / elapsed, "requests": len(done), "failures": failures[0],
            "latency_ms": 1000 * sum(done) / max(1, len(done))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="image side (default: the model's own)")
    parser.add_argument("--window-ms", type=int, default=50)
    parser.add_argument("--models-dir", type=Path, help="default: the tiny demo models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    models = args.models_dir or tiny_models()
    body = {"Phrase": "ginger cat", "Steps": args.steps,
            **({"Width": args.size, "Height": args.size} if args.size else {})}
    common = ["--models-dir", str(models), "--device", args.device, "--queue", "16", "--preload", "sd15"]
    results = {"machine": machine(), "steps": args.steps, "window_ms": args.window_ms, "rows": []}
    for label, extra in (("unbatched", []), ("batched", ["--batch-window-ms", str(args.window_ms),
                                                          "--max-batch", str(max(CLIENTS))])):
        with Server(*common, *extra) as server:
            server.post("/api/v1/stable-diffusion", body)
            for clients in CLIENTS:
                row = throughput(server, clients, args.seconds, body)
                results["rows"].append({"mode": label, **row})
    base = {r["clients"]: r["images_per_s"] for r in results["rows"] if r["mode"] == "unbatched"}
    rows = [[r["mode"], r["clients"], r["images_per_s"], r["latency_ms"],
             f"{r['images_per_s'] / base[r['clients']]:.2f}x", r["failures"]] for r in results["rows"]]
    markdown = table([f"mode (SD 1, {args.steps} steps)", "clients", "images/s", "mean latency ms",
                      "vs unbatched", "failed"], rows)
    write_results("batching", results, markdown, args.out)


if __name__ == "__main__":
    main()
