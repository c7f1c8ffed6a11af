"""The SDXL refiner: Diffusers' ensemble of experts, the base denoising up to a switch point, the refiner the rest.

The base runs with ``denoising_end`` and hands its latents (not an image) to an image-to-image pipeline
on the refiner's weights, which continues with ``denoising_start``; both follow one schedule, so with
the base's own UNet as the "refiner" the split is exactly a full base run.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pico.errors import InvalidRequest
from pico.pipelines.prompt_embeds import diffusers_clip_skip, encode_prompts

if TYPE_CHECKING:
    from pico.pipelines.base import CallContext
    from pico.schemas.requests import StableDiffusionXlRequest


def split_iterations(scheduler: Any, steps: int, switch_at: float) -> tuple[int, int, int]:
    """(loop iterations of the base, of the refiner, index the refiner's begin at) for ``steps`` split at ``switch_at``.

    The same arithmetic as Diffusers' SDXL pipelines: the base keeps the timesteps at or above the cutoff,
    the refiner those below it (a second-order scheduler's refiner starts on a whole step).
    """
    scratch = copy.deepcopy(scheduler)
    scratch.set_timesteps(steps)
    timesteps = [int(t) for t in scratch.timesteps]
    cutoff = int(round(scratch.config.num_train_timesteps * (1 - switch_at)))
    base = sum(1 for t in timesteps if t >= cutoff)
    refined = sum(1 for t in timesteps if t < cutoff)
    if getattr(scratch, "order", 1) == 2 and refined % 2 == 0 and refined:
        refined += 1
    return base, refined, len(timesteps) - refined


def refine(ctx: "CallContext", requests: list["StableDiffusionXlRequest"], arguments: dict[str, Any]) -> list[Any]:
    """The base's call up to RefinerSwitchAt, then ``ctx.refiner`` on its latents: the images."""
    first, base, refiner = requests[0], ctx.pipe, ctx.refiner
    steps, switch = arguments["num_inference_steps"], first.refiner_switch_at
    base_iterations, refiner_iterations, start = split_iterations(base.scheduler, steps, switch)
    if base_iterations == 0 or refiner_iterations == 0:
        who = "the base" if base_iterations == 0 else "the refiner"
        raise InvalidRequest(
            f"RefinerSwitchAt {switch:g} with {steps} steps leaves {who} no denoising step", field="RefinerSwitchAt",
            hint="Raise Steps, or move RefinerSwitchAt towards 0.5.")
    latents = base(**arguments, denoising_end=switch, output_type="latent").images
    if getattr(base, "_interrupt", False):  # interrupted before the switch: the base's latents as they are
        return decode(base, latents)
    later = {key: arguments[key] for key in ("num_inference_steps", "guidance_scale", "generator",
                                              "num_images_per_prompt") if key in arguments}
    inner = ctx.step_end  # PICO's own: the base's prompt editing (if any) swaps base-shaped embeddings
    if "prompt_embeds" in arguments:  # A1111's reading of the phrases: encoded again for the refiner's encoder
        embeds = _refiner_embeddings(refiner, requests, steps, start, later["num_images_per_prompt"])
        later.update(embeds.kwargs)
        switching = embeds.step_callback(refiner, inner=inner)
        callback = switching.get("callback_on_step_end")
        tensor_inputs = switching.get("callback_on_step_end_tensor_inputs")
    else:
        later.update(prompt=arguments["prompt"], negative_prompt=arguments.get("negative_prompt"))
        callback, tensor_inputs = inner, None
    if callback is not None:  # progress, interrupts and prompt editing count on from where the base stopped
        later["callback_on_step_end"] = lambda pipe, index, timestep, tensors: callback(pipe, index + start, timestep,
                                                                                         tensors)
        if tensor_inputs:
            later["callback_on_step_end_tensor_inputs"] = tensor_inputs
    return refiner(**later, image=latents, denoising_start=switch).images


def _refiner_embeddings(refiner: Any, requests: list[Any], steps: int, start: int, per_prompt: int) -> Any:
    """The phrases as A1111 reads them, for the refiner's one (OpenCLIP) encoder, as they stand at ``start``."""
    first = requests[0]
    batched = len(requests) > 1
    embeds = encode_prompts(
        refiner, [r.phrase for r in requests] if batched else first.phrase,
        [r.negative_phrase for r in requests] if batched else first.negative_phrase, steps=steps,
        clip_skip=diffusers_clip_skip(first.clip_skip),
        num_images=[r.total for r in requests] if batched else per_prompt,
    )
    pos, neg, pooled, neg_pooled = embeds._tensors(start, per_image=batched)  # the prompt at the switch step
    embeds.kwargs = {"prompt_embeds": pos, "negative_prompt_embeds": neg, "pooled_prompt_embeds": pooled,
                     "negative_pooled_prompt_embeds": neg_pooled}
    return embeds


def decode(pipe: Any, latents: Any) -> list[Any]:
    """SDXL latents to images with the pipeline's VAE, as Diffusers' SDXL pipelines decode them."""
    import torch

    vae = pipe.vae
    with torch.no_grad():
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        latents = latents.to(vae.dtype)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")
