"""An A1111 sampler and schedule type, as A1111 1.10 reads them, turned into a PICO Scheduler name.

As A1111's ``get_sampler_and_scheduler``: a legacy name's suffix ("DPM++ 2M Karras") is its schedule
type and wins over ``scheduler``; "Automatic" is the sampler's own (1.9+). Unlike A1111, a sampler
name PICO cannot run is refused rather than replaced by the default, and a schedule type Diffusers
cannot draw for a sampler is replaced by the sampler's own with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pico.catalog.samplers import (
    A1111_SAMPLERS,
    FLOW_SCHEDULERS,
    OTHER_A1111_SAMPLERS,
    OTHER_SCHEDULE_TYPES,
    SCHEDULE_TYPES,
    a1111_names,
    a1111_table_name,
    find_a1111_sampler,
    find_schedule_type,
    split_sampler_name,
)
from pico.errors import InvalidRequest
from pico.server.a1111.schemas import DEFAULT_SAMPLER, SamplerItem, SchedulerItem

AUTOMATIC = SCHEDULE_TYPES[0]
# k-diffusion's ancestral samplers with eta 0 add no noise: each step is its plain twin's, exactly.
ETA_ZERO_TWINS = {"Euler a": "Euler", "DPM2 a": "DPM2"}


@dataclass
class Sampling:
    """What a request's sampler fields came to: the PICO Scheduler, and A1111's names for the answer."""

    scheduler: str | None  # the table name PICO runs: "DPM++ 2M Karras"; None: the model's own
    sampler: str  # A1111's sampler name: "DPM++ 2M"
    schedule: str  # the schedule type's label as A1111 writes it in infotexts: "Karras", or "Automatic"
    warnings: list[str] = field(default_factory=list)
    eta_applied: bool = False  # an ancestral sampler's eta 0, run as its plain twin


def resolve(sampler_name: str | None, scheduler: str | None, field_name: str = "sampler_name",
            eta: float | None = None) -> Sampling:
    """The PICO Scheduler for A1111's sampler and schedule type; InvalidRequest naming ``field_name``.

    ``eta`` 0 on Euler a or DPM2 a runs their plain twin (Euler, DPM2), which is what k-diffusion then does.
    """
    asked = (sampler_name or DEFAULT_SAMPLER).strip()
    name, suffix = split_sampler_name(asked)
    sampler = find_a1111_sampler(name)
    if sampler is None:
        runnable = ", ".join(s.name for s in A1111_SAMPLERS)
        if name.lower() in (other.lower() for other in OTHER_A1111_SAMPLERS):
            raise InvalidRequest(f"{field_name} {asked!r}: Diffusers has no scheduler for this A1111 sampler",
                                 field=field_name, hint=f"Use one of {runnable} (GET /sdapi/v1/samplers).")
        raise InvalidRequest(f"{field_name} {asked!r} is not a sampler PICO has; known: {runnable}",
                             field=field_name, hint="GET /sdapi/v1/samplers lists them.")
    notes = []
    schedule = find_schedule_type(suffix) if suffix else AUTOMATIC
    if not suffix and scheduler and scheduler.strip():
        schedule = find_schedule_type(scheduler)
        if schedule is None:
            kind = "Diffusers has no such schedule" if scheduler.strip().lower() in \
                (other.lower() for other in OTHER_SCHEDULE_TYPES) else "it is not a schedule type PICO knows"
            notes.append(f"Schedule type {scheduler!r} was not applied ({kind}); {sampler.name} ran on its "
                         "own (Automatic). GET /sdapi/v1/schedulers lists those that work.")
            schedule = AUTOMATIC
    if schedule.name != "automatic" and not sampler.schedules:
        notes.append(f"Schedule types do not apply to {sampler.name} (A1111 ignores them too).")
        schedule = AUTOMATIC
    runs = find_a1111_sampler(ETA_ZERO_TWINS[sampler.name]) if eta == 0 and sampler.name in ETA_ZERO_TWINS \
        else sampler
    if schedule.name == "automatic":
        schedule = find_schedule_type(sampler.automatic)  # the asked sampler's own, also for its twin
    table = a1111_table_name(runs, schedule)
    if table is None:
        notes.append(f"{sampler.name} cannot run on the {schedule.label} schedule in Diffusers; it ran on its "
                     "own (Automatic).")
        schedule = find_schedule_type(sampler.automatic)
        table = a1111_table_name(runs, schedule)
    label = a1111_names(table)[1] or "Automatic"
    return Sampling(table, sampler.name, label, notes, eta_applied=runs is not sampler)


def for_flow_model(sampling: Sampling, family: str) -> Sampling:
    """The sampling of an SD 3 or FLUX model: their flow-matching Euler or UniPC, else the model's own (Euler)."""
    if sampling.sampler in FLOW_SCHEDULERS:
        notes = [] if sampling.schedule in ("Automatic", "Uniform") else [
            f"Schedule type {sampling.schedule} was not applied: {family} models follow their own noise schedule."]
        return Sampling(sampling.sampler, sampling.sampler, "Automatic", notes)
    note = (f"{sampling.sampler} was not applied: {family} models run {' or '.join(FLOW_SCHEDULERS)} "
            "(flow matching); the model's own ran.")
    return Sampling(None, sampling.sampler, "Automatic", [note])


def sampler_items() -> list[SamplerItem]:
    """GET /sdapi/v1/samplers: A1111 1.10's samplers that Diffusers can run, in A1111's order."""
    return [SamplerItem(s.name, list(s.aliases), dict(s.options)) for s in A1111_SAMPLERS]


def scheduler_items() -> list[SchedulerItem]:
    """GET /sdapi/v1/schedulers: the schedule types Diffusers can draw."""
    return [SchedulerItem(t.name, t.label, list(t.aliases) or None, t.default_rho, t.need_inner_model)
            for t in SCHEDULE_TYPES]
