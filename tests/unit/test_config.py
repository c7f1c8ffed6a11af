"""Settings: defaults < PICO_* environment < flags, and clear errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pico.config import Settings, env_name
from pico.errors import InvalidRequest


def test_defaults_are_the_originals():
    s = Settings.load({}, environ={})
    assert (s.host, s.port, s.threadsmax, s.verbose, s.xformers, s.queue, s.max_body_mb) == (
        "0.0.0.0", 5088, 1, False, False, 0, 32)


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {"PICO_PORT": "6000", "PICO_THREADSMAX": "3", "PICO_XFORMERS": "yes", "PICO_MODELS_DIR": "/m",
           "PICO_ALLOW_MODEL": "org/*, other/x"}
    from_env = Settings.load({}, environ=env)
    assert (from_env.port, from_env.threadsmax, from_env.xformers, from_env.models_dir, from_env.allow_model) == (
        6000, 3, True, Path("/m"), ("org/*", "other/x"))
    flagged = Settings.load({"port": 7000, "threadsmax": None, "xformers": False}, environ=env)
    assert (flagged.port, flagged.threadsmax, flagged.xformers) == (7000, 3, False)


def test_env_names_follow_the_flags():
    assert env_name("threadsmax") == "PICO_THREADSMAX"
    assert env_name("max_body_mb") == "PICO_MAX_BODY_MB"


def test_every_serve_flag_names_its_environment_variable_and_sets_a_setting():
    import dataclasses

    import typer.main

    from pico.cli import app

    command = typer.main.get_command(app).commands["serve"]
    settings_fields = {f.name for f in dataclasses.fields(Settings)}
    flags = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    assert len(flags) > 20
    for option in flags:
        assert option.name in settings_fields, option.name
        assert f"[env: {env_name(option.name)}" in option.help.replace("\\", ""), option.name


@pytest.mark.parametrize("env, message", [
    ({"PICO_PORT": "eighty"}, "PICO_PORT must be an integer, got 'eighty'"),
    ({"PICO_VERBOSE": "maybe"}, "PICO_VERBOSE must be true or false, got 'maybe'"),
    ({"PICO_PORT": "70000"}, "--port must be between 0 and 65535, got 70000"),
    ({"PICO_THREADSMAX": "0"}, "--threadsmax must be between 1 and 64, got 0"),
    ({"PICO_OFFLOAD": "disk"}, "offload must be one of none, model, sequential, got 'disk'"),
    ({"PICO_OFFLOAD": "model", "PICO_THREADSMAX": "2"},
     "--offload model runs one generation at a time; got --threadsmax 2"),
    ({"PICO_DEVICE": "tpu"}, "device must be auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; got 'tpu'"),
])
def test_bad_values_are_named(env, message):
    with pytest.raises(InvalidRequest) as caught:
        Settings.load({}, environ=env)
    assert caught.value.message == message


def test_demo_mode_serves_from_the_cache_folder(tmp_path):
    s = Settings(demo=True, cache_dir=tmp_path, models_dir=Path("/elsewhere"))
    assert s.models_root == tmp_path / "demo-models"
    assert Settings(models_dir=Path("/m")).models_root == Path("/m")


def test_checkpoint_and_lora_folders_come_from_the_environment_as_paths_do():
    settings = Settings.load(environ={"PICO_CHECKPOINT_DIR": f"/a/Stable-diffusion{os.pathsep} /b/checkpoints ",
                                      "PICO_LORA_DIR": "~/Lora"})
    assert settings.checkpoint_dir == (Path("/a/Stable-diffusion"), Path("/b/checkpoints"))
    assert settings.lora_dir == (Path("~/Lora").expanduser(),)
    flags = Settings.load({"lora_dir": (Path("/c"),)}, environ={"PICO_LORA_DIR": "/d"})
    assert flags.lora_dir == (Path("/c"),)  # flags win, whole
