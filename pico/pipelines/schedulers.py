"""Schedulers for one call, built from the sampler tables (``pico.catalog.samplers``)."""

from __future__ import annotations

from typing import Any

from pico.catalog.samplers import FLOW_SCHEDULERS, SCHEDULERS


def is_flow_scheduler(scheduler: Any) -> bool:
    """True for a flow-matching model's scheduler (SD 3.x, FLUX.1): its sampler names come from FLOW_SCHEDULERS."""
    config = getattr(scheduler, "config", {}) or {}
    return type(scheduler).__name__.startswith("FlowMatch") or bool(config.get("use_flow_sigmas"))


def build_scheduler(name: str | None, current: Any) -> Any:
    """A fresh scheduler for one call: ``name`` from the table, or a copy of the model's own (``current``)."""
    import diffusers

    if name is None:
        return type(current).from_config(current.config)
    if is_flow_scheduler(current):
        class_name, options = FLOW_SCHEDULERS[name]
        if class_name == "UniPCMultistepScheduler":  # the model's own shift, as its FlowMatch scheduler applies it
            options = {**options, "flow_shift": current.config.get("shift", current.config.get("flow_shift", 1.0))}
        return getattr(diffusers, class_name).from_config(current.config, **options)
    class_name, options = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(current.config, **options)


def scheduler_name(scheduler: Any) -> str:
    """The table name of a scheduler instance, or its class name if the table has none."""
    class_name = type(scheduler).__name__
    table = FLOW_SCHEDULERS if is_flow_scheduler(scheduler) else SCHEDULERS
    for name, (cls, options) in table.items():
        if cls == class_name and all(scheduler.config.get(k, False) == v for k, v in options.items()):
            return name
    return class_name
