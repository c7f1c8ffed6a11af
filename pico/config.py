"""Settings: defaults, overridden by ``PICO_*`` environment variables, overridden by flags.

This is the only module that reads the environment for PICO's own settings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from pico.errors import InvalidRequest

DEVICES_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
OFFLOAD_MODES = ("none", "model", "sequential")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pico"


@dataclass(frozen=True)
class Settings:
    """Everything that configures PICO, with the original's defaults."""

    host: str = "0.0.0.0"
    port: int = 5088
    verbose: bool = False
    threadsmax: int = 1
    queue: int = 0
    xformers: bool = False
    models_dir: Path | None = None
    cache_dir: Path = field(default_factory=_default_cache_dir)
    device: str = "auto"
    offload: str = "none"
    max_models: int = 2
    demo: bool = False
    max_body_mb: int = 32
    max_pixels: int = 2048 * 2048
    cors_origin: str = "*"
    api_key: str | None = None
    allow_model: tuple[str, ...] = ()
    allow_any_model: bool = False
    default_model: str = "sd15"
    png_compress_level: int = 1
    batch_window_ms: int = 0
    max_batch: int = 4
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    compile_mode: str = "default"
    sdxl_vae: str | None = None
    preload: tuple[str, ...] = ()
    shutdown_timeout: int = 60
    max_header_kb: int = 64
    header_timeout: int = 10
    public_url: str | None = None
    trust_proxy: bool = False
    max_streams: int = 16
    faults: str = ""
    # --ray: generations run on a Ray Serve deployment of engines (pico/ray/); "" runs them here
    ray: str = ""  # local, auto or the head's GCS host:port
    replicas: int = 1
    min_replicas: int = 0
    max_replicas: int = 0  # > 0: Serve autoscales between min_replicas and max_replicas
    ray_app: str = "pico"  # the Serve application's name in the cluster

    def __post_init__(self) -> None:
        for name in ("models_dir", "cache_dir"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value).expanduser())
        object.__setattr__(self, "allow_model", tuple(self.allow_model))
        object.__setattr__(self, "preload", tuple(self.preload))
        _check(self.port, 0, 65535, "port")
        _check(self.threadsmax, 1, 64, "threadsmax")
        _check(self.queue, 0, 1000, "queue")
        _check(self.max_models, 1, 64, "max-models")
        _check(self.max_body_mb, 1, 4096, "max-body-mb")
        _check(self.max_pixels, 64 * 64, 1 << 28, "max-pixels")
        _check(self.png_compress_level, 0, 9, "png-compress-level")
        _check(self.shutdown_timeout, 0, 3600, "shutdown-timeout")
        _check(self.batch_window_ms, 0, 5000, "batch-window-ms")
        _check(self.max_batch, 1, 64, "max-batch")
        _check(self.max_header_kb, 1, 1024, "max-header-kb")
        _check(self.header_timeout, 1, 3600, "header-timeout")
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _public_url(self.public_url))
        _check(self.max_streams, 0, 1000, "max-streams")
        _check(self.replicas, 1, 1000, "replicas")
        _check(self.max_replicas, 0, 1000, "max-replicas")
        if self.max_replicas:
            _check(self.min_replicas, 0, self.max_replicas, "min-replicas")
        if self.compile_mode not in COMPILE_MODES:
            raise InvalidRequest(f"compile-mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}",
                                 field="compile-mode")
        if self.offload not in OFFLOAD_MODES:
            raise InvalidRequest(
                f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.offload!r}", field="offload"
            )
        if self.offload != "none" and self.threadsmax > 1:
            # Offload hooks move a model's shared weights between CPU and GPU during a call:
            # a second call on the same weights finds them moved from under it.
            raise InvalidRequest(
                f"--offload {self.offload} runs one generation at a time; got --threadsmax {self.threadsmax}",
                field="threadsmax", hint="Use --threadsmax 1 with --offload (and --queue N to let requests wait).",
            )
        device = self.device
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise InvalidRequest(f"device must be {DEVICES_HELP}; got {device!r}", field="device")

    @property
    def generation_slots(self) -> int:
        """Generations that may run at once: --threadsmax, times the most replicas with --ray."""
        return self.threadsmax * (max(self.replicas, self.max_replicas) if self.ray else 1)

    @property
    def models_root(self) -> Path | None:
        """The folder models load from: the demo folder in demo mode, else --models-dir."""
        return self.cache_dir / "demo-models" if self.demo else self.models_dir

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings: defaults < PICO_* environment < ``overrides`` (flags; None means not given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse_env(f, raw)
        for name, value in (overrides or {}).items():
            if value is None or (isinstance(value, (tuple, list)) and not value and name in values):
                continue
            values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def env_name(setting: str) -> str:
    """The environment variable that sets ``setting`` (``max_body_mb`` -> ``PICO_MAX_BODY_MB``)."""
    return "PICO_" + setting.upper()


def _check(value: int, low: int, high: int, flag: str) -> None:
    if not low <= value <= high:
        raise InvalidRequest(f"--{flag} must be between {low} and {high}, got {value}", field=flag)


def _public_url(url: str) -> str:
    """The base URL clients reach the server at, without a trailing slash; InvalidRequest if it is not one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidRequest(f"--public-url must be an http:// or https:// URL without query or fragment, "
                             f"e.g. https://images.example.com, got {url!r}", field="public-url")
    return url.strip().rstrip("/")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_env(f: dataclasses.Field, raw: str) -> Any:
    name = env_name(f.name)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise InvalidRequest(f"{name} must be true or false, got {raw!r}", field=name)
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer, got {raw!r}", field=name) from None
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if "Path" in kind:
        return Path(raw).expanduser()
    return raw
