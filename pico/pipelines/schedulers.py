"""Schedulers for one call, built from the sampler table (``pico.catalog.samplers``)."""

from __future__ import annotations

from typing import Any

from pico.catalog.samplers import SCHEDULERS

NAME_ATTRIBUTE = "_pico_sampler"  # the table name a scheduler was built from (several names share a class)
MODEL_ATTRIBUTE = "_pico_model_scheduler"  # the model's own scheduler (class, config) it was built from


def build_scheduler(name: str | None, current: Any) -> Any:
    """A fresh scheduler for one call: ``name`` from the table, or a copy of the model's own (``current``).

    ``current`` may be a scheduler built here: the new one is then built from the same model's own.
    """
    import diffusers

    model = getattr(current, MODEL_ATTRIBUTE, (type(current), current.config))
    if name is None:
        scheduler = model[0].from_config(model[1])
    else:
        class_name, options = SCHEDULERS[name]
        scheduler = getattr(diffusers, class_name).from_config(model[1], **options)
        setattr(scheduler, NAME_ATTRIBUTE, name)
    setattr(scheduler, MODEL_ATTRIBUTE, model)
    return scheduler


def scheduler_name(scheduler: Any) -> str:
    """The table name a scheduler was built from; for a model's own, the first entry it matches, else its class."""
    built = getattr(scheduler, NAME_ATTRIBUTE, None)
    if built is not None:
        return built
    class_name = type(scheduler).__name__
    for name, (cls, options) in SCHEDULERS.items():
        if cls == class_name and all(scheduler.config.get(k, False) == v for k, v in options.items()):
            return name
    return class_name
