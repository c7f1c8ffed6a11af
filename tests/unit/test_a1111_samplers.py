"""A1111 1.10's samplers and schedule types: the table, "Automatic" per sampler, and how requests resolve."""

from __future__ import annotations

import pytest

from pico.catalog.samplers import A1111_SAMPLERS, SCHEDULE_TYPES, SCHEDULERS, a1111_names, split_sampler_name
from pico.errors import InvalidRequest
from pico.server.a1111.sampling import resolve, sampler_items, scheduler_items

# A1111 1.10: modules/sd_samplers_kdiffusion.py, sd_samplers_timesteps.py, sd_samplers_lcm.py, in its order.
A1111_1_10 = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
              "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
              "PLMS", "UniPC", "LCM"]
NO_DIFFUSERS_SCHEDULER = {"DPM fast", "DPM adaptive", "Restart", "DDIM CFG++"}


def test_samplers_listed_are_a1111s_that_diffusers_runs_in_a1111s_order():
    assert [item.name for item in sampler_items()] == [n for n in A1111_1_10 if n not in NO_DIFFUSERS_SCHEDULER]
    plms = next(item for item in sampler_items() if item.name == "PLMS")
    assert (plms.aliases, SCHEDULERS["PLMS"]) == (["plms"], ("PNDMScheduler", {"skip_prk_steps": True}))
    assert sampler_items()[0].to_dict() == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"],
                                            "options": {"scheduler": "karras"}}


def test_schedule_types_listed():
    assert [(i.name, i.label, i.default_rho) for i in scheduler_items()] == [
        ("automatic", "Automatic", -1.0), ("uniform", "Uniform", -1.0), ("karras", "Karras", 7.0),
        ("exponential", "Exponential", -1.0), ("sgm_uniform", "SGM Uniform", -1.0), ("beta", "Beta", -1.0)]


# Issue 11 item 19: "Automatic" is each sampler's own schedule since A1111 1.9 (its options' "scheduler").
@pytest.mark.parametrize("sampler, ran", [
    ("DPM++ 2M", "DPM++ 2M Karras"), ("DPM++ SDE", "DPM++ SDE Karras"), ("DPM++ 2M SDE", "DPM++ 2M SDE Exponential"),
    ("DPM++ 2M SDE Heun", "DPM++ 2M SDE Heun Exponential"), ("DPM++ 2S a", "DPM++ 2S a Karras"),
    ("DPM++ 3M SDE", "DPM++ 3M SDE Exponential"), ("DPM2", "DPM2 Karras"), ("DPM2 a", "DPM2 a Karras"),
    ("Euler a", "Euler a Uniform"), ("Euler", "Euler Uniform"), ("LMS", "LMS Uniform"), ("Heun", "Heun Uniform"),
    ("LCM", "LCM Uniform"), ("DDIM", "DDIM"), ("PLMS", "PLMS"), ("UniPC", "UniPC"),
])
def test_automatic_is_each_samplers_own_schedule(sampler, ran):
    for scheduler in (None, "Automatic", "automatic"):
        resolved = resolve(sampler, scheduler)
        assert (resolved.scheduler, resolved.sampler, resolved.warnings) == (ran, sampler, [])


def test_schedule_options_are_a1111s_full_noise_range():
    assert SCHEDULERS["Euler Karras"] == ("EulerDiscreteScheduler", {
        "use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False,
        "timestep_spacing": "linspace"})
    assert SCHEDULERS["Euler SGM Uniform"][1]["timestep_spacing"] == "trailing"
    assert SCHEDULERS["DPM++ 2S a Karras"] == ("DPMSolverSinglestepScheduler", {
        "algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True,
        "use_exponential_sigmas": False})


@pytest.mark.parametrize("sampler, scheduler, ran, schedule", [
    ("DPM++ 2M Karras", None, "DPM++ 2M Karras", "Karras"),  # a legacy name: its suffix is the schedule
    ("DPM++ 2M Karras", "exponential", "DPM++ 2M Karras", "Karras"),  # ... and wins, as in A1111
    ("dpm++ 2m", "Exponential", "DPM++ 2M Exponential", "Exponential"),
    ("k_euler_a", "SGMUniform", "Euler a SGM Uniform", "SGM Uniform"),
    ("Euler", "beta", "Euler Beta", "Beta"),
    ("LMS Karras", "automatic", "LMS Karras", "Karras"),
    ("DPM++ 2M SDE Heun", "karras", "DPM++ 2M SDE Heun Karras", "Karras"),
])
def test_sampler_and_schedule_resolve(sampler, scheduler, ran, schedule):
    resolved = resolve(sampler, scheduler)
    assert (resolved.scheduler, resolved.schedule, resolved.warnings) == (ran, schedule, [])


@pytest.mark.parametrize("sampler, scheduler, ran, warning", [
    ("Euler a", "karras", "Euler a Uniform", "Euler a cannot run on the Karras schedule in Diffusers"),
    ("DPM++ 3M SDE", "beta", "DPM++ 3M SDE Exponential", "DPM++ 3M SDE cannot run on the Beta schedule in Diffusers"),
    ("DDIM", "karras", "DDIM", "Schedule types do not apply to DDIM (A1111 ignores them too)."),
    ("Euler", "Align Your Steps", "Euler Uniform", "Schedule type 'Align Your Steps' was not applied (Diffusers has"),
    ("Euler", "bogus", "Euler Uniform", "Schedule type 'bogus' was not applied (it is not a schedule type PICO"),
])
def test_schedules_diffusers_cannot_draw_fall_back_with_a_warning(sampler, scheduler, ran, warning):
    resolved = resolve(sampler, scheduler)
    assert resolved.scheduler == ran and resolved.warnings[0].startswith(warning), resolved.warnings


@pytest.mark.parametrize("name, message", [
    ("Restart", "sampler_name 'Restart': Diffusers has no scheduler for this A1111 sampler"),
    ("DPM adaptive", "sampler_name 'DPM adaptive': Diffusers has no scheduler"),
    ("Nope", "sampler_name 'Nope' is not a sampler PICO has; known: DPM++ 2M, DPM++ SDE"),
])
def test_samplers_pico_cannot_run_are_refused(name, message):
    with pytest.raises(InvalidRequest) as caught:
        resolve(name, None)
    assert caught.value.field == "sampler_name" and caught.value.message.startswith(message)


def test_table_names_read_back_as_a1111_names():
    for sampler in A1111_SAMPLERS:
        for schedule in SCHEDULE_TYPES[1:]:
            name = f"{sampler.name} {schedule.label}"
            if name in SCHEDULERS:
                assert a1111_names(name) == (sampler.name, schedule.label)
                assert split_sampler_name(name) == (sampler.name, schedule.name)
    assert a1111_names("DPM++ 2M SDE") == ("DPM++ 2M SDE", None)


def test_the_readme_lists_every_option_without_effect():
    from pathlib import Path

    from pico.server.a1111.options import DEFAULTS, HONOURED

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    listed = ", ".join(f"`{key}`" for key in sorted(key for key in DEFAULTS if key not in HONOURED))
    assert listed in readme, "README.md's list of A1111 options without effect differs from options.DEFAULTS"
