"""Schedulers for one call, built from the sampler tables (``pico.catalog.samplers``)."""

from __future__ import annotations

from typing import Any

from pico.catalog.samplers import FLOW_SCHEDULERS, SCHEDULERS

NAME_ATTRIBUTE = "_pico_sampler"  # the table name a scheduler was built from (several names share a class)
MODEL_ATTRIBUTE = "_pico_model_scheduler"  # the model's own scheduler (class, config) it was built from


def is_flow_scheduler(scheduler: Any) -> bool:
    """True for a flow-matching model's scheduler (SD 3.x, FLUX.1): its sampler names come from FLOW_SCHEDULERS."""
    config = getattr(scheduler, "config", {}) or {}
    return _is_flow(type(scheduler), config)


def _is_flow(cls: type, config: Any) -> bool:
    return cls.__name__.startswith("FlowMatch") or bool((config or {}).get("use_flow_sigmas"))


def build_scheduler(name: str | None, current: Any) -> Any:
    """A fresh scheduler for one call: ``name`` from the table, or a copy of the model's own (``current``).

    ``current`` may be a scheduler built here: the new one is then built from the same model's own.
    """
    import diffusers

    model_class, config = getattr(current, MODEL_ATTRIBUTE, (type(current), current.config))
    if name is None:
        scheduler = model_class.from_config(config)
    else:
        if _is_flow(model_class, config):
            class_name, options = FLOW_SCHEDULERS[name]
            if class_name == "UniPCMultistepScheduler":  # the model's own shift, as its FlowMatch scheduler applies it
                options = {**options, "flow_shift": config.get("shift", config.get("flow_shift", 1.0))}
        else:
            class_name, options = SCHEDULERS[name]
        scheduler = getattr(diffusers, class_name).from_config(config, **options)
        setattr(scheduler, NAME_ATTRIBUTE, name)
    setattr(scheduler, MODEL_ATTRIBUTE, (model_class, config))
    return scheduler


def scheduler_name(scheduler: Any) -> str:
    """The table name a scheduler was built from; for a model's own, the first entry it matches, else its class."""
    built = getattr(scheduler, NAME_ATTRIBUTE, None)
    if built is not None:
        return built
    class_name = type(scheduler).__name__
    table = FLOW_SCHEDULERS if is_flow_scheduler(scheduler) else SCHEDULERS
    for name, (cls, options) in table.items():
        if cls == class_name and all(scheduler.config.get(k, False) == v for k, v in options.items()):
            return name
    return class_name
