"""The settings behind the HTTP limits and public links: ranges, URL checks, environment names."""

from __future__ import annotations

import pytest

from pico.config import Settings
from pico.errors import InvalidRequest
from pico.server.metrics import METHODS, OTHER, STATUSES


def test_defaults():
    s = Settings.load({}, environ={})
    assert (s.max_header_kb, s.header_timeout, s.public_url, s.trust_proxy) == (64, 10, None, False)


def test_environment_sets_them():
    s = Settings.load({}, environ={"PICO_MAX_HEADER_KB": "16", "PICO_HEADER_TIMEOUT": "3",
                                   "PICO_PUBLIC_URL": "https://img.example.com/pico/", "PICO_TRUST_PROXY": "yes"})
    assert (s.max_header_kb, s.header_timeout, s.public_url, s.trust_proxy) == (
        16, 3, "https://img.example.com/pico", True)


@pytest.mark.parametrize("env, message", [
    ({"PICO_MAX_HEADER_KB": "0"}, "--max-header-kb must be between 1 and 1024, got 0"),
    ({"PICO_HEADER_TIMEOUT": "0"}, "--header-timeout must be between 1 and 3600, got 0"),
    ({"PICO_PUBLIC_URL": "img.example.com"}, ("--public-url must be an http:// or https:// URL without query or "
                                              "fragment, e.g. https://images.example.com, got 'img.example.com'")),
    ({"PICO_PUBLIC_URL": "ftp://img.example.com"}, None),
    ({"PICO_PUBLIC_URL": "https://img.example.com/?next=1"}, None),
    ({"PICO_PUBLIC_URL": "https:///path-only"}, None),
])
def test_bad_values_are_named(env, message):
    with pytest.raises(InvalidRequest) as caught:
        Settings.load({}, environ=env)
    assert caught.value.field == next(iter(env)).removeprefix("PICO_").lower().replace("_", "-")
    if message:
        assert caught.value.message == message


def test_metric_label_sets_are_fixed():
    assert "GET" in METHODS and "INVENTED" not in METHODS and OTHER == "OTHER"
    assert {"200", "404", "431", "503"} <= STATUSES and "999" not in STATUSES
