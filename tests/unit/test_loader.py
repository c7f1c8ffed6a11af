"""Model resolution (models dir, aliases, allow-list, no escaping the folder) and the warm LRU cache."""

from __future__ import annotations

import threading
import time

import pytest

from pico.errors import ModelNotAllowed
from pico.catalog.resolver import ModelResolver
from pico.pipelines.loader import ModelCache


@pytest.fixture
def models_dir(tmp_path):
    root = tmp_path / "models"
    for model_id in ("runwayml/stable-diffusion-v1-5", "mine/custom"):
        (root / model_id).mkdir(parents=True)
        (root / model_id / "model_index.json").write_text("{}")
    return root


def test_models_dir_wins_then_aliases_then_hub(models_dir, tmp_path):
    resolver = ModelResolver(models_dir)
    local = resolver.resolve("runwayml/stable-diffusion-v1-5")
    assert (local.local, local.location) == (True, str((models_dir / "runwayml/stable-diffusion-v1-5").resolve()))
    moved = resolver.resolve("runwayml/stable-diffusion-inpainting")
    assert (moved.local, moved.location) == (False, "stable-diffusion-v1-5/stable-diffusion-inpainting")
    variation = resolver.resolve("lambdalabs/sd-image-variations-diffusers")
    assert variation.revision == "v2.0"


def test_alias_target_in_models_dir_is_used(tmp_path):
    root = tmp_path / "m"
    (root / "stable-diffusion-v1-5/stable-diffusion-v1-5").mkdir(parents=True)
    source = ModelResolver(root).resolve("runwayml/stable-diffusion-v1-5")
    assert source.local and source.location.endswith("stable-diffusion-v1-5/stable-diffusion-v1-5")


def test_allow_list(models_dir):
    resolver = ModelResolver(models_dir)
    assert resolver.is_allowed("stabilityai/stable-diffusion-xl-base-1.0")
    assert resolver.is_allowed("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert resolver.is_allowed("mine/custom")
    with pytest.raises(ModelNotAllowed) as caught:
        resolver.resolve("someone/else")
    assert caught.value.message == "Model someone/else is not allowed on this server"
    assert caught.value.status == 403
    assert ModelResolver(models_dir, allow=("someone/*",)).is_allowed("someone/else")
    assert ModelResolver(models_dir, allow_any=True).is_allowed("anyone/anything")


def test_no_path_escapes_the_models_dir(models_dir, tmp_path):
    outside = tmp_path / "outside" / "model"
    outside.mkdir(parents=True)
    (outside / "model_index.json").write_text("{}")
    (models_dir / "evil").mkdir()
    (models_dir / "evil" / "link").symlink_to(outside)
    resolver = ModelResolver(models_dir)
    assert not resolver.is_allowed("evil/link")
    assert resolver._local_folder("../outside") is None
    assert resolver._local_folder("evil/../../outside/model") is None
    assert resolver._local_folder(str(outside)) is None


def test_local_models_lists_the_folder(models_dir):
    assert ModelResolver(models_dir).local_models() == ["mine/custom", "runwayml/stable-diffusion-v1-5"]


def test_cache_loads_once_and_evicts_least_recently_used():
    loaded, released = [], []
    cache = ModelCache(lambda key: loaded.append(key) or f"model-{key}", max_models=2, release=released.append)
    for key in ("a", "b", "a", "c"):
        with cache.use(key) as entry:
            assert entry.value == f"model-{key}"
    assert loaded == ["a", "b", "c"]
    assert released == ["model-b"]
    assert cache.keys() == ["a", "c"]
    assert cache.loads == 3


def test_cache_never_evicts_a_model_in_use():
    released = []
    cache = ModelCache(lambda key: key, max_models=1, release=released.append)
    with cache.use("a"):
        with cache.use("b"):
            assert released == []  # two loaded, over the bound of one, but both in use
        assert released == ["b"]  # the idle one goes, not the one still generating
    assert cache.keys() == ["a"]


def test_concurrent_users_share_one_load():
    calls, loading, release = [], threading.Event(), threading.Event()

    def held_load(key):
        calls.append(key)
        loading.set()
        assert release.wait(30)
        return key

    cache = ModelCache(held_load, max_models=2)
    results = []

    def use():
        with cache.use("a") as entry:
            results.append(entry.value)

    threads = [threading.Thread(target=use) for _ in range(4)]
    threads[0].start()
    assert loading.wait(30)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 30
    while cache._entries["a"].users < 4:  # all four wait on the one load in progress
        assert time.monotonic() < deadline
        time.sleep(0.005)
    release.set()
    for t in threads:
        t.join(30)
    assert calls == ["a"] and results == ["a"] * 4


def test_failed_load_is_not_cached():
    attempts = []

    def flaky(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("corrupt")
        return key

    cache = ModelCache(flaky, max_models=2)
    with pytest.raises(OSError):
        with cache.use("a"):
            pass
    with cache.use("a") as entry:
        assert entry.value == "a"
    assert attempts == ["a", "a"]


def test_demo_folders_from_an_older_pico_are_rebuilt(tmp_path):
    import json

    from pico.pipelines.tiny import MARKER, VERSION, is_tiny

    (tmp_path / MARKER).write_text(json.dumps({"models": [], "version": VERSION - 1}))
    assert not is_tiny(tmp_path)
    (tmp_path / MARKER).write_text(json.dumps({"models": [], "version": VERSION}))
    assert is_tiny(tmp_path)
    assert not is_tiny(tmp_path / "missing")
