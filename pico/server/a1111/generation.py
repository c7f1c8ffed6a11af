"""A1111's txt2img and img2img: the request turned into PICO requests, run as jobs, answered as A1111 answers.

Fields are read with A1111's conversions; settings come from the options store under the
request's override_settings; the sampler and schedule type resolve through the sampler table;
hires fix and inpainting become PICO's ``Hires`` and inpainting fields. What PICO does not apply
is named in ``info``'s ``warnings``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from pico import __version__
from pico.catalog.families import defaults_for
from pico.catalog.pipelines import PipelineInfo, find_pipeline
from pico.catalog.upscalers import HIRES_UPSCALERS
from pico.errors import InvalidRequest
from pico.pipelines.resize import resize_image
from pico.prompt_syntax import extract_extra_networks
from pico.schemas import fields
from pico.schemas.images import a1111_parameters, decode_image, embedded_parameters, encode_images, to_base64
from pico.schemas.requests import MAX_SEED, GenerationRequest, pick_seeds
from pico.server.a1111.checkpoints import checkpoint_for, find_checkpoint
from pico.server.a1111.features import SD_UPSCALE, refuse_script, unsupported
from pico.server.a1111.options import Effective, effective
from pico.server.a1111.sampling import Sampling, for_flow_model, resolve
from pico.server.a1111.schemas import ImagesResponse, Img2ImgRequest, ProcessingRequest, Txt2ImgRequest
from pico.server.errors import in_protocol_terms
from pico.server.http import encoded_images, read_json_body, run_jobs

if TYPE_CHECKING:
    from pico.schemas.results import Generation
    from pico.server.service import Service

ORIGIN = "a1111"  # interrupt and skip reach only the jobs this API started, as in A1111
# PICO request field -> the A1111 field it came from, to name the right one in errors.
A1111_FIELDS = {
    "Phrase": "prompt", "NegativePhrase": "negative_prompt", "Seed": "seed", "Steps": "steps",
    "GuidanceScale": "cfg_scale", "Width": "width", "Height": "height", "Total": "batch_size",
    "Scheduler": "sampler_name", "Model": "sd_model_checkpoint", "ImageBase64": "init_images",
    "MaskImageBase64": "mask", "Strength": "denoising_strength", "VaeType": "sd_vae", "Hires": "hr_scale",
    "Hires.Steps": "hr_second_pass_steps", "Hires.Width": "hr_resize_x",
    "Hires.Height": "hr_resize_y", "MaskBlur": "mask_blur", "MaskPadding": "inpaint_full_res_padding",
    "Refiner": "refiner_checkpoint", "RefinerSwitchAt": "refiner_switch_at",
}


@dataclass
class Call:
    """One A1111 generation call: its request, what its settings and sampler came to, and the notes so far."""

    request: ProcessingRequest
    body: dict[str, Any]
    settings: Effective
    sampling: Sampling
    notes: list[str] = field(default_factory=list)


def prepare(service: "Service", cls: type, body: Any) -> Call:
    """Parse an A1111 body leniently and resolve its checkpoint, settings and sampler."""
    request = fields.parse(cls, body, lenient=True)
    model = checkpoint_for(service, request)
    settings = effective(service, request, model)
    field_name = "sampler_name" if request.sampler_name else "sampler_index"
    sampling = resolve(request.sampler_name or request.sampler_index, request.scheduler, field_name, request.eta)
    family = defaults_for(model)
    if family.flow:  # SD 3, FLUX: flow-matching samplers only
        sampling = for_flow_model(sampling, family.label)
    notes = sampling.warnings + settings.warnings + unsupported(request, sampling)
    return Call(request, body, settings, sampling, notes)


def txt2img(service: "Service") -> dict:
    """Generate from a prompt; with enable_hr, A1111's two passes."""
    call = prepare(service, Txt2ImgRequest, read_json_body(service))
    request = call.request
    refuse_script(request)
    pipeline = service.engine.resolver.text_to_image_pipeline(call.settings.model)
    extra = {}
    if request.firstphase_width or request.firstphase_height:  # A1111's old hires fix: width is the first pass
        extra.update(Width=(request.firstphase_width or request.width) // 8 * 8,
                     Height=(request.firstphase_height or request.height) // 8 * 8)
    if request.enable_hr and defaults_for(call.settings.model).flow:
        call.notes.append("The hires fix was not applied: PICO has none for SD 3 and FLUX models.")
    elif request.enable_hr:
        extra["Hires"] = hires_fields(call)
    pico = pico_request(service, pipeline, call, extra)
    return answer(service, pipeline, batches(pico, request.n_iter), call)


def hires_fields(call: Call) -> dict[str, Any]:
    """PICO's Hires object for A1111's hires fields."""
    request: Txt2ImgRequest = call.request
    upscaler = {name.lower(): name for name in HIRES_UPSCALERS}.get((request.hr_upscaler or "Latent").strip().lower())
    if upscaler is None:
        call.notes.append(f"hr_upscaler {request.hr_upscaler!r} is not available in PICO; Lanczos was used "
                          "(GET /sdapi/v1/upscalers and /sdapi/v1/latent-upscale-modes list those that are).")
        upscaler = "Lanczos"
    hires: dict[str, Any] = {"Scale": request.hr_scale, "Upscaler": upscaler, "Strength": request.denoising_strength}
    if request.hr_resize_x or request.hr_resize_y:
        hires.update(Width=request.hr_resize_x or None, Height=request.hr_resize_y or None)
    if request.hr_second_pass_steps:
        hires["Steps"] = request.hr_second_pass_steps
    if request.hr_sampler_name or request.hr_scheduler:
        second = resolve(request.hr_sampler_name or call.sampling.sampler, request.hr_scheduler or call.request.scheduler,
                         "hr_sampler_name", request.eta)
        call.notes += [note for note in second.warnings if note not in call.notes]
        hires["Scheduler"] = second.scheduler
    if request.hr_prompt:
        hires["Phrase"] = request.hr_prompt
    if request.hr_negative_prompt:
        hires["NegativePhrase"] = request.hr_negative_prompt
    return hires


def img2img(service: "Service") -> dict:
    """Redraw init_images[0] at width x height; with a mask, repaint only its white area (inpainting)."""
    call = prepare(service, Img2ImgRequest, read_json_body(service))
    request: Img2ImgRequest = call.request
    refuse_script(request, (SD_UPSCALE,))
    if not request.init_images:
        raise InvalidRequest("init_images must hold one image", field="init_images")
    init = flatten(decode_image(request.init_images[0], "init_images", service.settings.max_pixels, "RGBA"))
    size = (request.width // 8 * 8, request.height // 8 * 8)
    mode = request.resize_mode if request.resize_mode in (0, 1, 2) else 0
    if (request.script_name or "").strip().lower() == SD_UPSCALE:
        from pico.server.a1111.extras import sd_upscale

        return sd_upscale(service, call, init)
    strength = {"Strength": request.denoising_strength}
    if not request.mask:
        pipeline = find_pipeline("image-to-image")
        image = resize_image(mode, init, *size)
        pico = pico_request(service, pipeline, call, strength, {"ImageBase64": image})
        return answer(service, pipeline, batches(pico, request.n_iter), call)
    mask = a1111_mask(decode_image(request.mask, "mask", service.settings.max_pixels, "RGBA"), request)
    if mask.size != init.size:
        mask = mask.resize(init.size, Image.Resampling.LANCZOS)
    if not request.inpaint_full_res and mode != 0:  # crop or fill: both as A1111 resizes them
        init, mask = resize_image(mode, init, *size), resize_image(mode, mask, *size)
    pipeline = find_pipeline("inpaint")
    blur = request.mask_blur if request.mask_blur is not None else max(request.mask_blur_x, request.mask_blur_y)
    inpainting = {**strength, "MaskBlur": blur, "KeepUnmasked": True,
                  "InpaintArea": "masked" if request.inpaint_full_res else "whole",
                  "MaskPadding": request.inpaint_full_res_padding,
                  "MaskedContent": "fill" if request.inpainting_fill == 0 else "original"}
    pico = pico_request(service, pipeline, call, inpainting, {"ImageBase64": init, "MaskImageBase64": mask})
    return answer(service, pipeline, batches(pico, request.n_iter), call)


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """An RGBA image on A1111's img2img background colour (white), as RGB."""
    if image.mode != "RGBA" or image.getextrema()[-1] == (255, 255):
        return image.convert("RGB")
    canvas = Image.new("RGBA", image.size, background)
    canvas.alpha_composite(image)
    return canvas.convert("RGB")


def a1111_mask(image: Image.Image, request: Img2ImgRequest) -> Image.Image:
    """The mask as A1111's create_binary_mask reads it: a transparent mask's alpha (rounded), else its grey;
    inverted when asked. The blur is the inpainting's own (MaskBlur)."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        mask = image.getchannel("A").point(lambda v: 255 if v > 128 else 0)
    else:
        mask = image.convert("L")
    return ImageOps.invert(mask) if request.inpainting_mask_invert else mask


def pico_request(service: "Service", pipeline: PipelineInfo, call: Call, extra: dict[str, Any] | None = None,
                 images: dict[str, Image.Image] | None = None) -> Any:
    """The pipeline's PICO request for an A1111 call, validated; errors name the A1111 field."""
    request, settings = call.request, call.settings
    prompt, negative = request.prompt, request.negative_prompt
    if request.disable_extra_networks:  # A1111 still drops <lora:...> tags from the text, and applies none
        prompt, negative = extract_extra_networks(prompt)[0], extract_extra_networks(negative)[0]
    body = {
        "Phrase": prompt or " ",  # A1111 allows an empty prompt, PICO's Phrase not: set below
        "NegativePhrase": negative or None,
        "Seed": request.seed if request.seed >= 0 else None,
        "Steps": request.steps,
        "GuidanceScale": request.cfg_scale,
        "Width": request.width // 8 * 8,  # A1111 rounds down to a multiple of 8
        "Height": request.height // 8 * 8,
        "Total": request.batch_size,
        **({"Scheduler": call.sampling.scheduler} if call.sampling.scheduler else {}),
        "Model": settings.model,
        "VaeType": settings.vae_type,
        **({"ClipSkip": settings.clip_skip()} if settings.clip_skip() else {}),
        **(extra or {}),
    }
    refiner = (request.refiner_checkpoint or "").strip()
    if refiner and refiner.lower() != "none":  # A1111's refiner: PICO's SDXL ensemble of experts (SDXL txt2img)
        if pipeline.route != "stable-diffusion-xl":
            raise InvalidRequest("refiner_checkpoint works with SDXL models on txt2img", field="refiner_checkpoint")
        body.update(Refiner=find_checkpoint(service, refiner, "refiner_checkpoint"),
                    RefinerSwitchAt=request.refiner_switch_at)
    try:
        pico = pipeline.request_type.parse(body, service.settings.max_pixels, images=images)
    except InvalidRequest as exc:
        raise in_protocol_terms(exc, A1111_FIELDS) from None
    pico.phrase = prompt
    return pico


def batches(pico: GenerationRequest, n_iter: int) -> list[GenerationRequest]:
    """n_iter copies of a request, seeds continuing from one to the next as in A1111."""
    first_seed = pico.seed if pico.seed is not None and pico.seed >= 0 else pick_seeds(None, 1)[0]
    result = []
    for index in range(n_iter):
        batch = copy.copy(pico)
        batch.seed = (first_seed + index * pico.total) % (MAX_SEED + 1)
        result.append(batch)
    return result


def answer(service: "Service", pipeline: PipelineInfo, requests: list[GenerationRequest], call: Call) -> dict:
    """Run the batches as one job and answer A1111's images, parameters and info."""
    started = time.time()
    _, generations = run_jobs(service, pipeline, requests, origin=ORIGIN)
    images, metadata, warnings = [], [], list(call.notes)
    for batch, generation in zip(requests, generations):
        images += encode(service, pipeline, batch, generation, call)
        metadata += generation.metadata
        warnings += [w for w in generation.warnings if w not in warnings]
    return respond(call, requests[0], images, metadata, warnings, started)


def answer_images(service: "Service", call: Call, pico: GenerationRequest, images: list[Image.Image],
                  metadata: list[dict[str, Any]], warnings: list[str], started: float) -> dict:
    """A1111's answer for images made here from several generations (SD upscale's joined tiles)."""
    encoded = []
    if call.request.send_images:
        params = pico.parameters()
        encoded = [to_base64(data) for data in encode_images(
            images, call.settings.samples_format, [embedded_parameters("a1111-sd-upscale", params, meta)
                                                   for meta in metadata], service.settings.png_compress_level)]
    return respond(call, pico, encoded, metadata, warnings, started)


def encode(service: "Service", pipeline: PipelineInfo, request: GenerationRequest, generation: "Generation",
           call: Call) -> list[str]:
    """A generation's images as base64 in the samples_format (PNGs with their parameters), if sent at all."""
    if not call.request.send_images:
        return []
    return [to_base64(data) for data in encoded_images(pipeline, request, generation, call.settings.samples_format,
                                                       service.settings.png_compress_level)]


def respond(call: Call, pico: GenerationRequest, images: list[str], metadata: list[dict[str, Any]],
            warnings: list[str], started: float) -> dict:
    """A1111's answer: the images, the request's parameters, and info as a JSON string."""
    request, body = call.request, call.body
    parameters = {**body, **request.to_dict()}
    if isinstance(request, Img2ImgRequest) and not request.include_init_images:
        parameters.update(init_images=None, mask=None)
    return ImagesResponse(images, parameters, info_text(call, pico, metadata, warnings, started)).to_dict()


def info_text(call: Call, pico: GenerationRequest, metadata: list[dict[str, Any]], warnings: list[str],
              started: float) -> str:
    """A1111's ``info``: a JSON string with the seeds and infotexts of what was made."""
    request, settings = call.request, call.settings
    seeds = [meta["Seed"] for meta in metadata]
    count = len(metadata)
    extra: dict[str, Any] = {"Schedule type": call.sampling.schedule}
    hires = getattr(pico, "hires", None)
    if hires is not None:
        extra.update({"Denoising strength": hires.strength, "Hires upscaler": hires.upscaler,
                      **({"Hires upscale": hires.scale} if hires.width is None and hires.height is None else
                         {"Hires resize": f"{hires.width or 0}x{hires.height or 0}"}),
                      **({"Hires steps": hires.steps} if hires.steps else {})})
    info = {
        "prompt": request.prompt, "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt, "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * count, "subseed_strength": 0,
        "width": pico.width, "height": pico.height, "sampler_name": call.sampling.sampler,
        "cfg_scale": request.cfg_scale, "steps": request.steps, "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None, "sd_model_name": pico.model,
        "sd_model_hash": (metadata[0].get("Checkpoint") or {}).get("Hash"),
        "sd_vae_name": None if settings.vae_type == "original" else settings.vae_type, "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": request.denoising_strength, "extra_generation_params": extra,
        "index_of_first_image": 0, "infotexts": [a1111_parameters(meta) for meta in metadata], "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)), "clip_skip": settings.clip_stop,
        "is_using_inpainting_conditioning": False, "version": f"pico {__version__}",
    }
    if warnings:
        info["warnings"] = warnings
    return json.dumps(info, ensure_ascii=False)
