"""Soak, in full: concurrent clients send valid and bad requests to `pico serve` for minutes.

The same soak as the test suite's (tests/soak.py), run longer and reported: problems (any is a
failure), answers by status, health latency percentiles, and memory growth.

    python benchmarks/soak.py [--seconds 300] [--clients 4] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Server, machine, summary, table, tiny_models, write_results  # noqa: E402
from tests.soak import SERVER_ARGS, soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--models-dir", type=Path, help="default: the tiny demo models")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    models = args.models_dir or tiny_models()
    with Server("--models-dir", str(models), "--device", "cpu", *SERVER_ARGS) as server:
        result = soak(server, args.seconds, args.clients, settle=min(20.0, args.seconds / 2))
    health = summary(result.health_seconds)
    growth = result.rss_after / result.rss_before - 1
    results = {"machine": machine(), "seconds": args.seconds, "clients": args.clients, "health": health,
               "statuses": {str(k): v for k, v in sorted(result.counts.items())}, "rss_start": result.rss_start, "rss_before": result.rss_before,
               "rss_after": result.rss_after, "problems": result.problems}
    markdown = table(["seconds", "clients", "answers", "200s", "health p50 ms", "p99 ms", "max ms", "RSS growth",
                      "problems"],
                     [[args.seconds, args.clients, sum(result.counts.values()), result.counts.get(200, 0),
                       health["p50_ms"], health["p99_ms"], max(result.health_seconds) * 1000, f"{growth:+.1%}",
                       len(result.problems)]])
    write_results("soak", results, markdown, args.out)
    for problem in result.problems[:20]:
        print("problem:", problem)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
