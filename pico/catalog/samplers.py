"""One table from the sampler names users know (AUTOMATIC1111's) to Diffusers schedulers.

The PICO ``Scheduler`` field, A1111's ``sampler_name``/``scheduler`` and the OpenAI
``extra_body`` all resolve through it; ``pico.pipelines.schedulers`` builds the schedulers.
AUTOMATIC1111's own samplers and schedule types have their block below (``A1111_SAMPLERS``,
``SCHEDULE_TYPES``): they add "<sampler> <schedule type>" names to the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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



# ---------------------------------------------------------------------------------------------------------
# AUTOMATIC1111 1.10's samplers and schedule types (modules/sd_samplers_*.py, modules/sd_schedulers.py),
# those Diffusers can run. A1111 names a sampler and, since 1.9, a schedule type apart; "Automatic" is the
# sampler's own (its options' "scheduler", else uniform). Each runnable pair gets a table name
# "<sampler> <schedule label>" ("DPM++ 2M Karras", "Euler Exponential").

@dataclass(frozen=True)
class ScheduleType:
    """An A1111 schedule type and the Diffusers options that draw it."""

    name: str  # A1111's key: "karras"
    label: str  # and label: "Karras"
    options: dict[str, Any]
    default_rho: float = -1.0
    need_inner_model: bool = False
    aliases: tuple[str, ...] = ()


# A1111's uniform, Karras, exponential and beta schedules span the model's whole noise range: Diffusers
# gets it with "linspace" timesteps (its "leading" default stops short of the noisiest step).
LINSPACE = {"timestep_spacing": "linspace"}
SCHEDULE_TYPES: tuple[ScheduleType, ...] = (
    ScheduleType("automatic", "Automatic", {}),
    ScheduleType("uniform", "Uniform", LINSPACE, need_inner_model=True),
    ScheduleType("karras", "Karras", {**LINSPACE, "use_karras_sigmas": True}, default_rho=7.0),
    ScheduleType("exponential", "Exponential", {**LINSPACE, "use_exponential_sigmas": True}),
    ScheduleType("sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}, need_inner_model=True,
                 aliases=("SGMUniform",)),
    ScheduleType("beta", "Beta", {**LINSPACE, "use_beta_sigmas": True}, need_inner_model=True),
)
# A1111 1.10 schedule types Diffusers has no option for (they are refused, naming the ones that work).
OTHER_SCHEDULE_TYPES = ("Polyexponential", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM")

# What each Diffusers scheduler class takes of those options (Diffusers 0.42).
_SIGMAS = frozenset({"timestep_spacing", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"})
_TAKES: dict[str, frozenset[str]] = {
    # DPM-Solver++ on beta sigmas runs off the end of its sigmas at 50 steps in Diffusers 0.42: left out.
    "EulerDiscreteScheduler": _SIGMAS, "DPMSolverMultistepScheduler": _SIGMAS - {"use_beta_sigmas"},
    "DPMSolverSDEScheduler": _SIGMAS,
    "KDPM2DiscreteScheduler": _SIGMAS, "KDPM2AncestralDiscreteScheduler": _SIGMAS,
    "HeunDiscreteScheduler": _SIGMAS, "LMSDiscreteScheduler": _SIGMAS,
    "DPMSolverSinglestepScheduler": _SIGMAS - {"timestep_spacing", "use_beta_sigmas"},
    "EulerAncestralDiscreteScheduler": frozenset({"timestep_spacing"}), "LCMScheduler": frozenset({"timestep_spacing"}),
}


@dataclass(frozen=True)
class A1111Sampler:
    """An A1111 sampler: the Diffusers scheduler that runs it, and what /sdapi/v1/samplers says of it."""

    name: str
    scheduler: tuple[str, dict[str, Any]]  # Diffusers class and options
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # A1111's: its default "scheduler", "second_order"...
    schedules: bool = True  # False: A1111's timestep samplers (DDIM, PLMS, UniPC) take no schedule type

    @property
    def automatic(self) -> str:
        """The schedule type "Automatic" means for this sampler (A1111 1.9+): its own, else uniform."""
        return self.options.get("scheduler", "uniform") if self.schedules else "automatic"

    def takes(self, schedule: ScheduleType) -> bool:
        """Whether Diffusers can draw this sampler on ``schedule``."""
        takes = _TAKES.get(self.scheduler[0], frozenset())
        return self.schedules and all(key in takes for key, value in self._schedule(schedule).items() if value)

    def options_for(self, schedule: ScheduleType | None) -> dict[str, Any]:
        """The Diffusers options of this sampler on ``schedule`` (None: its plain name), the other schedules off."""
        class_name, options = self.scheduler
        takes = _TAKES.get(class_name, frozenset())
        return {**options, **{key: value for key, value in self._schedule(schedule).items() if key in takes}}

    def _schedule(self, schedule: ScheduleType | None) -> dict[str, Any]:
        # DPM-Solver single-step always spaces its steps over the whole range: it needs no "linspace".
        wanted = {**{key: False for key in _SIGMAS - {"timestep_spacing"}}, **(schedule.options if schedule else {})}
        if "timestep_spacing" not in _TAKES.get(self.scheduler[0], ()) and wanted.get("timestep_spacing") == "linspace":
            del wanted["timestep_spacing"]
        return wanted


_SDE = {"brownian_noise": True}
A1111_SAMPLERS: tuple[A1111Sampler, ...] = (  # A1111's order (its /sdapi/v1/samplers), runnable ones only
    A1111Sampler("DPM++ 2M", ("DPMSolverMultistepScheduler", ODE), ("k_dpmpp_2m",), {"scheduler": "karras"}),
    A1111Sampler("DPM++ SDE", ("DPMSolverSDEScheduler", {}), ("k_dpmpp_sde",),
                 {"scheduler": "karras", "second_order": True, **_SDE}),
    A1111Sampler("DPM++ 2M SDE", ("DPMSolverMultistepScheduler", SDE), ("k_dpmpp_2m_sde",),
                 {"scheduler": "exponential", **_SDE}),
    A1111Sampler("DPM++ 2M SDE Heun", ("DPMSolverMultistepScheduler", {**SDE, "solver_type": "heun"}),
                 ("k_dpmpp_2m_sde_heun",), {"scheduler": "exponential", **_SDE, "solver_type": "heun"}),
    # Second-order single-step DPM-Solver++ with noise: Diffusers' nearest to k-diffusion's 2S ancestral.
    A1111Sampler("DPM++ 2S a", ("DPMSolverSinglestepScheduler", {**SDE, "solver_order": 2}), ("k_dpmpp_2s_a",),
                 {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    A1111Sampler("DPM++ 3M SDE", ("DPMSolverMultistepScheduler", {**SDE, "solver_order": 3}), ("k_dpmpp_3m_sde",),
                 {"scheduler": "exponential", "discard_next_to_last_sigma": True, **_SDE}),
    A1111Sampler("Euler a", ("EulerAncestralDiscreteScheduler", {}), ("k_euler_a", "k_euler_ancestral"),
                 {"uses_ensd": True}),
    A1111Sampler("Euler", ("EulerDiscreteScheduler", {}), ("k_euler",)),
    A1111Sampler("LMS", ("LMSDiscreteScheduler", {}), ("k_lms",)),
    A1111Sampler("Heun", ("HeunDiscreteScheduler", {}), ("k_heun",), {"second_order": True}),
    A1111Sampler("DPM2", ("KDPM2DiscreteScheduler", {}), ("k_dpm_2",),
                 {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    A1111Sampler("DPM2 a", ("KDPM2AncestralDiscreteScheduler", {}), ("k_dpm_2_a",),
                 {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
    A1111Sampler("DDIM", ("DDIMScheduler", {}), ("ddim",), schedules=False),
    A1111Sampler("PLMS", SCHEDULERS["PNDM"], ("plms",), schedules=False),
    A1111Sampler("UniPC", ("UniPCMultistepScheduler", {}), ("unipc",), schedules=False),
    A1111Sampler("LCM", ("LCMScheduler", {}), ("lcm",)),
)
# A1111 1.10 samplers Diffusers has no scheduler for.
OTHER_A1111_SAMPLERS = ("DPM fast", "DPM adaptive", "Restart", "DDIM CFG++")


def _a1111_table() -> dict[str, tuple[str, dict[str, Any]]]:
    table = {}
    for sampler in A1111_SAMPLERS:
        class_name = sampler.scheduler[0]
        table[sampler.name] = SCHEDULERS.get(sampler.name, (class_name, sampler.options_for(None)))
        for schedule in SCHEDULE_TYPES[1:]:
            if sampler.takes(schedule):
                table[f"{sampler.name} {schedule.label}"] = (class_name, sampler.options_for(schedule))
    return table


SCHEDULERS.update(_a1111_table())  # "DPM++ 2M Karras" and the like now draw on A1111's full noise range
SCHEDULER_NAMES = tuple(SCHEDULERS)
_SAMPLER_NAMES = {name.lower(): s for s in A1111_SAMPLERS for name in (s.name, *s.aliases)}
_SCHEDULE_NAMES = {name.lower(): t for t in SCHEDULE_TYPES for name in (t.name, t.label, *t.aliases)}


def find_a1111_sampler(name: str) -> A1111Sampler | None:
    """An A1111 sampler by name or alias, any case ("euler a", "k_euler_a")."""
    return _SAMPLER_NAMES.get(name.strip().lower())


def find_schedule_type(name: str) -> ScheduleType | None:
    """An A1111 schedule type by name, label or alias, any case ("karras", "SGM Uniform", "SGMUniform")."""
    return _SCHEDULE_NAMES.get(name.strip().lower())


def split_sampler_name(name: str) -> tuple[str, str | None]:
    """A legacy sampler name as A1111 reads it: "DPM++ 2M Karras" -> ("DPM++ 2M", "karras"); else (name, None)."""
    text = name.strip()
    for schedule in SCHEDULE_TYPES[1:]:
        for option in (schedule.label, schedule.name, *schedule.aliases):
            if text.lower().endswith(" " + option.lower()) and find_a1111_sampler(text[:-len(option) - 1]):
                return text[:-len(option) - 1], schedule.name
    return text, None


def a1111_table_name(sampler: A1111Sampler, schedule: ScheduleType) -> str | None:
    """The table name drawing ``sampler`` on ``schedule`` ("automatic" resolved first), or None if none can."""
    if schedule.name == "automatic":
        schedule = _SCHEDULE_NAMES[sampler.automatic]
    if schedule.name == "automatic":
        return sampler.name
    name = f"{sampler.name} {schedule.label}"
    return name if name in SCHEDULERS and sampler.takes(schedule) else None


def a1111_names(table_name: str) -> tuple[str, str | None]:
    """(A1111 sampler, schedule label or None) of a table name: "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras")."""
    sampler, schedule = split_sampler_name(table_name)
    return (sampler, _SCHEDULE_NAMES[schedule].label) if schedule else (table_name, None)


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
