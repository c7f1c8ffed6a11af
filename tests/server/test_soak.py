"""Soak, briefly: a step of its own (``pytest -m soak``; ``make test`` runs it after the rest).

Its bounds are what this suite can promise on a shared 2-core machine: no problems at all, enough
traffic to mean something, health answering in under 0.5 s at the 99th percentile, and memory
flat: within 10 % from 20 s into the load (where allocators and caches reach their working size;
on this machine RSS rises about 190 MiB in those 20 s, then stays within 2-3 %) to the end.
``benchmarks/soak.py`` runs the same soak for longer and reports the numbers. PICO_SOAK_SECONDS
sets the length here (default 45).
"""

from __future__ import annotations

import os

import pytest

from tests.live import percentile
from tests.soak import SERVER_ARGS, soak

SECONDS = float(os.environ.get("PICO_SOAK_SECONDS", "45"))
SETTLE = 20.0

pytestmark = pytest.mark.soak


def test_soak(serve):
    server = serve(*SERVER_ARGS)
    result = soak(server, SECONDS, settle=min(SETTLE, SECONDS / 2))
    assert result.problems == []
    assert result.counts.get(200, 0) >= 10 and sum(result.counts.values()) >= 50, result.counts
    health_p99 = percentile(result.health_seconds, 99)
    assert health_p99 < 0.5, f"health p99 {health_p99 * 1000:.0f} ms (slowest {max(result.health_seconds):.2f} s)"
    assert result.rss_after <= result.rss_before * 1.10, \
        f"RSS grew from {result.rss_before >> 20} MiB to {result.rss_after >> 20} MiB under load " \
        f"(it was {result.rss_start >> 20} MiB before the load)"
    assert server.get("/api/v1/health").json == {"Status": "Idle"}
