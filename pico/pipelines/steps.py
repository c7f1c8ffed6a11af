"""The step callback every pipeline call gets: progress in the steps asked for, interrupts, previews, faults."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pico.errors import Cancelled

if TYPE_CHECKING:
    from pico.pipelines.base import CallContext


def seed_noise_sampler(scheduler: Any, seeds: list[int]) -> None:
    """Seed the Brownian noise of SDE schedulers (DPM++ SDE) from the images' seeds, one tree per image.

    Left unset, Diffusers seeds it from the global torch RNG: the same request gave new pixels
    every time, and concurrent calls drew from one shared generator.
    """
    if hasattr(scheduler, "noise_sampler_seed"):
        scheduler.noise_sampler_seed = list(seeds)


def steps_done(scheduler: Any, index: int) -> tuple[int, int]:
    """(steps done, steps in all) after loop iteration ``index``, in the steps a request asked for.

    Second-order samplers (Heun, DPM2, DPM++ SDE) run two model evaluations per step and list
    each step's timestep twice (all but the first), so Diffusers' loop counts 2n-1 iterations;
    PNDM (PLMS) evaluates its first step twice, n+1 iterations.
    """
    order = max(1, int(getattr(scheduler, "order", 1) or 1))
    iterations = len(scheduler.timesteps)
    extra = 1 if type(scheduler).__name__ == "PNDMScheduler" and iterations > 1 else 0
    return -(-max(1, index + 1 - extra) // order), -(-(iterations - extra) // order)


def step_callback(pipe: Any, ctx: CallContext, stopped: list[int]) -> dict[str, Any]:
    """The pipeline's step-callback arguments, in whichever of Diffusers' two styles it takes.

    ``on_step`` sees each step once (in the request's steps); an interrupt (on_step returning
    True) ends denoising early, and the step it ended at goes into ``stopped``.
    """
    if ctx.on_step is None and ctx.fault is None and ctx.on_preview is None:
        return {}
    reported = [0]

    def step_done(index: int, latents: Any) -> bool:
        done, total = steps_done(pipe.scheduler, index)
        stop = False
        if done != reported[0]:
            reported[0] = done
            stop = bool(ctx.on_step(done, total)) if ctx.on_step is not None else False
            if ctx.on_preview is not None and latents is not None:
                from pico.pipelines.previews import latents_to_images

                ctx.on_preview(done, lambda: latents_to_images(pipe, latents, ctx.size))
            if stop and not stopped:
                stopped.append(done)
        if ctx.fault is not None:  # after the step is counted and previewed: a held job shows where it is held
            ctx.fault(done)
        return stop

    if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
        def on_step_end(_pipe: Any, index: int, _timestep: Any, tensors: dict) -> dict:
            if step_done(index, tensors.get("latents")):
                _pipe._interrupt = True  # Diffusers skips the remaining steps, then decodes
            return tensors

        return {"callback_on_step_end": on_step_end}

    def legacy(index: int, _timestep: Any, latents: Any) -> None:
        if step_done(index, latents):  # this older pipeline cannot stop early and keep its images
            raise Cancelled("The generation was interrupted")

    return {"callback": legacy, "callback_steps": 1}
