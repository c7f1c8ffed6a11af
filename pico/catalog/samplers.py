"""One table from the sampler names users know (AUTOMATIC1111's) to Diffusers schedulers.

The PICO ``Scheduler`` field, A1111's ``sampler_name``/``scheduler`` and the OpenAI
``extra_body`` all resolve through it; ``pico.pipelines.schedulers`` builds the schedulers.
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


# --- Flow-matching samplers (SD 3.x, FLUX.1) --------------------------------------------------------------
# Kept apart from the table above (the families' block): flow-matching models predict a velocity, so the
# DDPM-style schedulers above do not fit them. The names are the A1111 samplers they stand for; each was
# checked to run deterministically on SD 3.5 and FLUX.1 (dev and schnell) and to follow the model's own
# sigma schedule (shift, and FLUX.1 dev's resolution-dependent shift). "Heun" (FlowMatchHeun) fails on
# FLUX.1, DPM-Solver++ takes no custom sigmas (FLUX.1 passes them), and the stochastic variants ("Euler a",
# LCM) draw from the global RNG: none of those is offered.
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": False, "stochastic_sampling": False}),
    # flow_shift follows the model's own shift (see pico.pipelines.schedulers.build_scheduler)
    "UniPC": ("UniPCMultistepScheduler", {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
}

FLOW_SCHEDULER_NAMES = tuple(FLOW_SCHEDULERS)
