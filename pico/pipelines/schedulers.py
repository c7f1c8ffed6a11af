"""Schedulers for one call, built from the sampler table (``pico.catalog.samplers``)."""

from __future__ import annotations

from typing import Any

from pico.catalog.samplers import SCHEDULERS


def build_scheduler(name: str | None, current: Any) -> Any:
    """A fresh scheduler for one call: ``name`` from the table, or a copy of the model's own (``current``)."""
    import diffusers

    if name is None:
        return type(current).from_config(current.config)
    class_name, options = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(current.config, **options)


def scheduler_name(scheduler: Any) -> str:
    """The table name of a scheduler instance, or its class name if the table has none."""
    class_name = type(scheduler).__name__
    for name, (cls, options) in SCHEDULERS.items():
        if cls == class_name and all(scheduler.config.get(k, False) == v for k, v in options.items()):
            return name
    return class_name
