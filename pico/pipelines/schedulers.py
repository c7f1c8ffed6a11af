"""One table from the sampler names users know (AUTOMATIC1111's) to Diffusers schedulers.

The PICO ``Scheduler`` field, A1111's ``sampler_name``/``scheduler`` and the OpenAI
``extra_body`` all resolve through it. Importing this module does not import Diffusers.
"""

from __future__ import annotations

from typing import Any

# Options are explicit both ways, so "DPM++ 2M" is never silently Karras because the
# model's own scheduler config was.
PLAIN = {"use_karras_sigmas": False}
KARRAS = {"use_karras_sigmas": True}
ODE = {"algorithm_type": "dpmsolver++"}
SDE = {"algorithm_type": "sde-dpmsolver++"}

# name -> (Diffusers scheduler class, options passed to from_config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {**ODE, **PLAIN}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {**ODE, **KARRAS}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**SDE, **PLAIN}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {**SDE, **KARRAS}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", PLAIN),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", KARRAS),
    "DPM2": ("KDPM2DiscreteScheduler", PLAIN),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", KARRAS),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", PLAIN),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", KARRAS),
    "Euler": ("EulerDiscreteScheduler", PLAIN),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", PLAIN),
    "LMS": ("LMSDiscreteScheduler", PLAIN),
    "LMS Karras": ("LMSDiscreteScheduler", KARRAS),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),  # as every SD model ships it; PRK needs 4+ steps
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
}

SCHEDULER_NAMES = tuple(SCHEDULERS)


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
