"""Hires fix, as AUTOMATIC1111 does it: draw, upscale, then redraw at the larger size with the same weights.

The first pass is the text-to-image call. Its latents are resized (the ``Latent`` upscalers,
``torch.nn.functional.interpolate`` as A1111 does), or its images are (Lanczos, Nearest, None,
with A1111's resize); a target whose aspect differs is cropped in the middle. The second pass
is an image-to-image call on the same weights (``from_pipe``) with fresh generators from the
same seeds, its own sampler and phrases, prompt editing counted as A1111 counts it in its hires
pass. Its steps are A1111's: it runs exactly Steps, on a schedule of int(Steps / Strength) steps
(at most the model's 1000), from the noise level Strength gives (``second_pass_schedule``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pico.catalog.upscalers import LATENT_UPSCALE_MODES
from pico.pipelines.prompt_embeds import diffusers_clip_skip, weighted_phrases
from pico.pipelines.resize import resize_image
from pico.pipelines.schedulers import NAME_ATTRIBUTE, build_scheduler
from pico.pipelines.steps import seed_noise_sampler, step_callback

if TYPE_CHECKING:
    from pico.pipelines.base import CallContext
    from pico.schemas.requests import StableDiffusionRequest


def first_pass_size(pipe: Any, arguments: dict[str, Any]) -> tuple[int, int]:
    """The first pass's (width, height): the request's, else the model's native size."""
    if arguments.get("width"):
        return arguments["width"], arguments["height"]
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return side, side


def run_hires(ctx: "CallContext", arguments: dict[str, Any], request: "StableDiffusionRequest",
              seeds: list[int]) -> list[Any]:
    """Both passes for one request; the first pass's images alone when it was interrupted."""
    import torch

    hires, pipe = request.hires, ctx.pipe
    width, height = first_pass_size(pipe, arguments)
    to_width, to_height, crop_x, crop_y = hires.target_size(width, height)
    latent = hires.upscaler in LATENT_UPSCALE_MODES
    first = pipe(**arguments, **({"output_type": "latent"} if latent else {})).images
    if getattr(pipe, "_interrupt", False):  # A1111 skips the second pass of an interrupted generation
        return decode(pipe, first) if latent else list(first)
    tx, ty = crop_x // 8, crop_y // 8  # A1111 crops the latents: half on each side, the odd one on the far side
    if latent:
        mode, antialias = LATENT_UPSCALE_MODES[hires.upscaler]
        image = torch.nn.functional.interpolate(first, size=(to_height // 8, to_width // 8), mode=mode,
                                                antialias=antialias)
        image = image[:, :, ty // 2:image.shape[2] - (ty + 1) // 2, tx // 2:image.shape[3] - (tx + 1) // 2]
    else:
        box = (tx // 2 * 8, ty // 2 * 8, to_width - (tx + 1) // 2 * 8, to_height - (ty + 1) // 2 * 8)
        image = [resize_image(0, picture, to_width, to_height, hires.upscaler).crop(box) for picture in first]
    ctx.size = ((to_width // 8 - tx) * 8, (to_height // 8 - ty) * 8)
    if hires.strength == 0:  # A1111 then samples no step: the upscaled first pass is the result
        return decode(pipe, image) if latent else image
    return second_pass(ctx, request, image, seeds, arguments["num_inference_steps"])


def second_pass_schedule(steps: int, strength: float, train_steps: int = 1000) -> tuple[int, float]:
    """Diffusers' (num_inference_steps, strength) that run ``steps`` steps as A1111's hires pass does.

    A1111 (``setup_img2img_steps`` with steps given) schedules int(steps / min(strength, 0.999)) steps
    and runs the last ``steps`` of them; Diffusers runs the last int(n x strength).
    """
    total = min(train_steps, max(steps, int(steps / min(strength, 0.999))))
    return total, min(1.0, (steps + 0.5) / total)


def second_pass(ctx: "CallContext", request: "StableDiffusionRequest", image: Any, seeds: list[int],
                first_steps: int) -> list[Any]:
    """The image-to-image pass on the upscaled latents or images, sharing the loaded weights."""
    from diffusers import AutoPipelineForImage2Image

    from pico.pipelines.base import generators

    hires, pipe = request.hires, ctx.pipe
    second = AutoPipelineForImage2Image.from_pipe(pipe)
    second.set_progress_bar_config(disable=True)
    second.scheduler = build_scheduler(hires.scheduler or _first_pass_sampler(pipe), pipe.scheduler)
    steps = hires.steps or first_steps
    total, strength = second_pass_schedule(steps, hires.strength)
    phrased = copy.copy(request)
    phrased.phrase = hires.phrase if hires.phrase else request.phrase
    phrased.negative_phrase = hires.negative_phrase if hires.negative_phrase is not None else request.negative_phrase
    stopped: list[int] = []
    callback = step_callback(second, ctx, stopped)
    guidance = request.guidance_scale
    embeds = weighted_phrases(second, [phrased], first_steps, hires_steps=steps)
    if embeds is not None:
        inputs = dict(embeds.kwargs)
        callback = embeds.step_callback(second, inner=callback.get("callback_on_step_end"))
        guidance = embeds.guidance_scale(guidance)
        ctx.warnings.extend(w for w in embeds.warnings if w not in ctx.warnings)
    else:
        inputs = {"prompt": phrased.phrase, "negative_prompt": phrased.negative_phrase}
        if request.clip_skip and diffusers_clip_skip(request.clip_skip):
            inputs["clip_skip"] = diffusers_clip_skip(request.clip_skip)
    seed_noise_sampler(second.scheduler, seeds)
    images = second(**inputs, image=image, strength=strength, num_inference_steps=total,
                    guidance_scale=guidance, num_images_per_prompt=len(seeds), generator=generators(seeds),
                    **callback).images
    if stopped:
        ctx.warnings.append(f"Interrupted after {stopped[0]} of {steps} hires steps: the images are not fully "
                            "denoised.")
    return list(images)


def _first_pass_sampler(pipe: Any) -> str | None:
    """The table name the first pass's scheduler was built from; None for the model's own."""
    return getattr(pipe.scheduler, NAME_ATTRIBUTE, None)


def decode(pipe: Any, latents: Any) -> list[Any]:
    """Latents to images as the text-to-image pipeline decodes them (SDXL's latents mean and std included)."""
    import torch

    vae = pipe.vae
    latents = latents.to(vae.dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / vae.config.scaling_factor + mean
    else:
        latents = latents / vae.config.scaling_factor
    with torch.no_grad():
        images = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil")
