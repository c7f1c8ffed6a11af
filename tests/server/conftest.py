"""The live servers the server tests share, one per configuration (see ``serve`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

API_KEY = "s3cret-key"
ALLOWED_ORIGINS = ("http://allowed.example", "http://also.example")
# One server for everything that needs a queue and less than the defaults; its options differ from the
# defaults so that the tests on it can show each one works: the queue, CORS origins, the default model
# of the OpenAI and A1111 routes, PNG compression, a small pixel limit (cheap fuzzing), a public address.
OPERATIONS = ("--queue", "2", "--cors-origin", ", ".join(ALLOWED_ORIGINS), "--default-model", "sd2",
              "--max-pixels", str(128 * 128), "--host", "0.0.0.0")
OPERATIONS_ENV = {"PICO_PNG_COMPRESS_LEVEL": "9"}


@pytest.fixture(scope="session")
def server(serve):
    """The server with the original's defaults: one slot, no queue."""
    return serve()


@pytest.fixture(scope="session")
def keyed(serve):
    """A server that requires an API key."""
    return serve("--api-key", API_KEY)


@pytest.fixture(scope="session")
def operations(serve):
    """One slot, a queue of two, and the other options of OPERATIONS."""
    return serve(*OPERATIONS, env=OPERATIONS_ENV)


@pytest.fixture
def fresh_server(serve):
    """Start a server of its own for this test (one it may stop); stopped after the test."""
    started = []

    def start(*args: str, env: dict[str, str] | None = None):
        started.append(serve(*args, env=env, fresh=True))
        return started[-1]

    yield start
    for live in started:
        live.stop()
