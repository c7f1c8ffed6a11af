"""Live servers on the tiny models, one per configuration, shared by a module's tests."""

from __future__ import annotations

import pytest

from tests.server.live import LiveServer


@pytest.fixture(scope="session")
def server(tiny_models, tmp_path_factory):
    """The server with the original's defaults: one slot, no queue (shared by every test module)."""
    live = LiveServer(tiny_models, log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()


API_KEY = "s3cret-key"


@pytest.fixture(scope="session")
def keyed(tiny_models, tmp_path_factory):
    """A server that requires an API key."""
    live = LiveServer(tiny_models, "--api-key", API_KEY, log=tmp_path_factory.mktemp("log") / "serve.log")
    yield live
    live.stop()
