"""The AUTOMATIC1111 web UI API (/sdapi/v1), so A1111 clients (webuiapi, editor plugins, bots) work.

Each call is translated into a PICO request and run as PICO jobs on the same slots as every
other route; progress, interrupt and skip are views of those jobs. Errors take A1111's shape
in ``errors.py`` (every path under /sdapi/).
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import TYPE_CHECKING, Any

import bottle
from PIL import Image, ImageFilter, ImageOps

from pico import __version__
from pico.errors import InvalidRequest
from pico.jobs import Job, JobState
from pico.catalog.pipelines import PipelineInfo, find_pipeline
from pico.catalog.samplers import SCHEDULERS
from pico.schemas import fields
from pico.schemas.images import a1111_parameters, decode_image, to_base64
from pico.schemas.requests import MAX_SEED, GenerationRequest, pick_seeds
from pico.server.a1111.infotext import png_info
from pico.server.a1111.checkpoints import (
    checkpoint_for,
    checkpoint_items,
    current_title,
    find_checkpoint,
    lora_items,
    refresh,
    set_options,
)
from pico.server.a1111.schemas import (
    DEFAULT_SAMPLER,
    SCHEDULE_TYPES,
    EmbeddingsResponse,
    ImagesResponse,
    Img2ImgRequest,
    LoraItem,
    Options,
    OptionsUpdate,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    Txt2ImgRequest,
)
from pico.server.http import encoded_images, read_json_body, run_jobs, send_json
from pico.server.errors import in_protocol_terms
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

PREFIX = "/sdapi/v1"
ORIGIN = "a1111"  # interrupt and skip reach only the jobs this API started, as in A1111
TAG = "AUTOMATIC1111 API"
# PICO request field -> the A1111 field it came from, to name the right one in errors.
A1111_FIELDS = {
    "Phrase": "prompt", "NegativePhrase": "negative_prompt", "Seed": "seed", "Steps": "steps",
    "GuidanceScale": "cfg_scale", "Width": "width", "Height": "height", "Total": "batch_size",
    "Scheduler": "sampler_name", "Model": "sd_model_checkpoint", "ImageBase64": "init_images",
    "MaskImageBase64": "mask", "Strength": "denoising_strength", "Refiner": "refiner_checkpoint",
    "RefinerSwitchAt": "refiner_switch_at",
}
# Features PICO lacks: A1111 lists them, PICO's lists are empty.
EMPTY_LISTS = ("upscalers", "latent-upscale-modes", "sd-vae", "hypernetworks", "face-restorers",
               "realesrgan-models", "prompt-styles", "script-info", "extensions")
LIST_SCHEMA = {"type": "array", "items": {"type": "object"}}


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the AUTOMATIC1111 routes to ``app``."""

    def route(path: str, method: str, callback, summary: str, request=None, response=None, query=()) -> None:
        app.route(f"{PREFIX}/{path}", method, lambda: send_json(callback()),
                  doc=RouteDoc(summary, TAG, request=request, response=response, errors="a1111", query=query))

    route("txt2img", "POST", lambda: txt2img(service), "Text to image", Txt2ImgRequest, ImagesResponse)
    route("img2img", "POST", lambda: img2img(service),
          "Image to image; inpainting when a mask is given", Img2ImgRequest, ImagesResponse)
    route("sd-models", "GET", lambda: [i.to_dict() for i in checkpoint_items(service)],
          "The checkpoints: the default model, the text-to-image models of the models directory, and the "
          "single-file checkpoints of the checkpoint folders", response=_list_of(SDModelItem))
    route("options", "GET", lambda: Options(current_title(service)).to_dict(),
          "Settings; sd_model_checkpoint is the default model", response=Options)
    route("options", "POST", lambda: set_options(service), "Change settings: sd_model_checkpoint switches the "
          "default model; other settings are ignored", OptionsUpdate, {"type": "null"})
    route("refresh-checkpoints", "POST", lambda: refresh(service),
          "Rescan the checkpoint and LoRA folders now (changes are also noticed within a second)",
          response={"type": "null"})
    route("refresh-loras", "POST", lambda: refresh(service),
          "Rescan the LoRA and checkpoint folders now (changes are also noticed within a second)",
          response={"type": "null"})
    route("loras", "GET", lambda: lora_items(service), "The LoRA files of the LoRA folders, for <lora:NAME:WEIGHT>",
          response=_list_of(LoraItem))
    route("samplers", "GET", lambda: [SamplerItem(name).to_dict() for name in SCHEDULERS],
          "The samplers", response=_list_of(SamplerItem))
    route("schedulers", "GET", lambda: [SchedulerItem(n, label, default_rho=rho).to_dict()
                                        for n, (label, _, rho) in SCHEDULE_TYPES.items()],
          "The schedule types PICO applies (others fall back to the sampler's own)", response=_list_of(SchedulerItem))
    route("png-info", "POST", lambda: _png_info(service), "The generation parameters embedded in a PNG",
          PngInfoRequest, PngInfoResponse)
    route("progress", "GET", lambda: progress(service).to_dict(),
          "The running generation's progress; current_image: a live preview (PNG, base64) every 10 steps",
          response=ProgressResponse, query=(("skip_current_image", "true: leave current_image null"),))
    route("interrupt", "POST", lambda: _interrupt(service),
          "End the running generations at their next step; each call returns the images so far",
          response={"type": "object"})
    route("skip", "POST", lambda: _skip(service),
          "End the running generations at their next step; a call with n_iter goes on to its next batch",
          response={"type": "null"})
    route("scripts", "GET", lambda: ScriptsList().to_dict(), "Script titles (PICO has none)", response=ScriptsList)
    route("embeddings", "GET", lambda: EmbeddingsResponse().to_dict(), "Embeddings (PICO loads none)",
          response=EmbeddingsResponse)
    for name in EMPTY_LISTS:
        route(name, "GET", list, f"{name} (PICO has none: always empty)", response=LIST_SCHEMA)
    for name in ("refresh-vae",):
        route(name, "POST", lambda: None, f"{name} (nothing to refresh)", response={"type": "null"})


def _interrupt(service: "Service") -> dict:
    """End the running A1111 generations at their next step, and their calls' later batches (A1111 answers {})."""
    service.jobs.interrupt_running(ORIGIN)
    return {}


def _skip(service: "Service") -> None:
    """End the running A1111 generations at their next step; their calls go on with the next batch."""
    service.jobs.skip_running(ORIGIN)


def _list_of(item: type) -> dict:
    return {"type": "array", "items": fields.json_schema(item)}


def txt2img(service: "Service") -> dict:
    """Generate from a prompt."""
    body = read_json_body(service)
    request = fields.parse(Txt2ImgRequest, body)
    model = checkpoint_for(service, request)
    pipeline = service.engine.resolver.text_to_image_pipeline(model)
    return generate(service, pipeline, pico_request(service, pipeline, request, model), request, body)


def img2img(service: "Service") -> dict:
    """Redraw init_images[0] at width x height; with a mask, repaint only its white area (inpainting)."""
    body = read_json_body(service)
    request = fields.parse(Img2ImgRequest, body)
    if not request.init_images:
        raise InvalidRequest("init_images must hold one image", field="init_images")
    model = checkpoint_for(service, request)
    max_pixels = service.settings.max_pixels
    init = decode_image(request.init_images[0], "init_images", max_pixels)
    strength = {"Strength": request.denoising_strength}
    if not request.mask:
        pipeline = find_pipeline("image-to-image")
        pico = pico_request(service, pipeline, request, model, strength, {"ImageBase64": init})
        return generate(service, pipeline, pico, request, body)
    mask = decode_image(request.mask, "mask", max_pixels, "RGBA")
    pipeline = find_pipeline("inpaint")
    pico = pico_request(service, pipeline, request, model, strength, {"ImageBase64": init, "MaskImageBase64": mask})
    size = (pico.width, pico.height)
    pico.images.update(ImageBase64=init.resize(size), MaskImageBase64=a1111_mask(mask, request, size))
    return generate(service, pipeline, pico, request, body)


def pico_request(service: "Service", pipeline: PipelineInfo, request: Txt2ImgRequest, model: str,
                 extra: dict[str, Any] | None = None, images: dict[str, Image.Image] | None = None) -> Any:
    """The pipeline's PICO request for an A1111 one, validated; errors name the A1111 field."""
    body = {
        "Phrase": request.prompt or " ",  # A1111 allows an empty prompt, PICO's Phrase not: set below
        "NegativePhrase": request.negative_prompt or None,
        "Seed": request.seed if request.seed >= 0 else None,
        "Steps": request.steps,
        "GuidanceScale": request.cfg_scale,
        "Width": request.width // 8 * 8,  # A1111 rounds down to a multiple of 8
        "Height": request.height // 8 * 8,
        "Total": request.batch_size,
        "Scheduler": sampler_for(request),
        "Model": model,
        **(extra or {}),
    }
    if request.refiner_checkpoint:  # A1111's refiner: PICO's SDXL ensemble of experts (txt2img, SDXL models)
        if pipeline.route != "stable-diffusion-xl":
            raise InvalidRequest("refiner_checkpoint works with SDXL models on txt2img", field="refiner_checkpoint")
        body.update(Refiner=find_checkpoint(service, request.refiner_checkpoint, "refiner_checkpoint"),
                    RefinerSwitchAt=request.refiner_switch_at)
    try:
        pico = pipeline.request_type.parse(body, service.settings.max_pixels, images=images)
    except InvalidRequest as exc:
        raise in_protocol_terms(exc, A1111_FIELDS) from None
    pico.phrase = request.prompt
    return pico


def sampler_for(request: Txt2ImgRequest) -> str:
    """The SCHEDULERS entry for sampler_name (or sampler_index) and scheduler, e.g. DPM++ 2M + karras."""
    field = "sampler_name" if request.sampler_name else "sampler_index"
    asked = request.sampler_name or request.sampler_index or DEFAULT_SAMPLER
    sampler = {name.lower(): name for name in SCHEDULERS}.get(asked.strip().lower())
    if sampler is None:
        raise InvalidRequest(f"{field} {asked!r} is not a sampler PICO has; known: {', '.join(SCHEDULERS)}",
                             field=field, hint="GET /sdapi/v1/samplers lists them.")
    _, suffix, _ = SCHEDULE_TYPES.get((request.scheduler or "automatic").strip().lower(), SCHEDULE_TYPES["automatic"])
    return sampler + suffix if sampler + suffix in SCHEDULERS else sampler


def a1111_mask(image: Image.Image, request: Img2ImgRequest, size: tuple[int, int]) -> Image.Image:
    """The mask as A1111 prepares it: binary (from alpha if transparent), inverted if asked, sized, blurred."""
    if image.getextrema()[-1] != (255, 255):
        image = image.getchannel("A")
    mask = image.convert("L").point(lambda v: 255 if v > 128 else 0)
    if request.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    mask = mask.resize(size)
    if request.mask_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(request.mask_blur))
    return mask


def generate(service: "Service", pipeline: PipelineInfo, pico: GenerationRequest,
             request: Txt2ImgRequest, body: dict) -> dict:
    """Run n_iter batches (seeds continuing) and answer A1111's images, parameters and info."""
    started = time.time()
    first_seed = pico.seed if pico.seed is not None and pico.seed >= 0 else pick_seeds(None, 1)[0]
    batches = []
    for index in range(request.n_iter):  # seeds continue from batch to batch, as in A1111
        batch = copy.copy(pico)
        batch.seed = (first_seed + index * pico.total) % (MAX_SEED + 1)
        batches.append(batch)
    _, generations = run_jobs(service, pipeline, batches, origin=ORIGIN)
    images: list[str] = []
    metadata: list[dict[str, Any]] = []
    warnings: list[str] = []
    for batch, generation in zip(batches, generations):
        if request.send_images:
            images += [to_base64(png) for png in encoded_images(
                pipeline, batch, generation, "png", service.settings.png_compress_level)]
        metadata += generation.metadata
        warnings += [w for w in generation.warnings if w not in warnings]
    parameters = {**body, **request.to_dict()}
    if isinstance(request, Img2ImgRequest) and not body.get("include_init_images"):
        parameters.update(init_images=None, mask=None)
    return ImagesResponse(images, parameters, info_text(request, pico, metadata, warnings, started)).to_dict()


def info_text(request: Txt2ImgRequest, pico: GenerationRequest, metadata: list[dict[str, Any]],
              warnings: list[str], started: float) -> str:
    """A1111's ``info``: a JSON string with the seeds and infotexts of what was made."""
    seeds = [meta["Seed"] for meta in metadata]
    count = len(metadata)
    info = {
        "prompt": request.prompt, "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt, "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * count, "subseed_strength": 0,
        "width": pico.width, "height": pico.height, "sampler_name": metadata[0]["Scheduler"],
        "cfg_scale": request.cfg_scale, "steps": request.steps, "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None, "sd_model_name": pico.model,
        "sd_model_hash": (metadata[0].get("Checkpoint") or {}).get("Hash"),
        "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": getattr(request, "denoising_strength", None), "extra_generation_params": {},
        "index_of_first_image": 0, "infotexts": [a1111_parameters(meta) for meta in metadata], "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)), "clip_skip": 1,
        "version": f"pico {__version__}",
    }
    if warnings:
        info["warnings"] = warnings
    return json.dumps(info, ensure_ascii=False)


def _png_info(service: "Service") -> dict:
    request = fields.parse(PngInfoRequest, read_json_body(service))
    return png_info(request.image, service.settings.max_pixels).to_dict()


def progress(service: "Service") -> ProgressResponse:
    """The oldest running job as A1111's progress; job_count counts the jobs running or waiting.

    current_image is the running job's latest live preview, a PNG (a grid for a batch) of its
    latents mapped to colours, as A1111's "Approx cheap" previews: asking for progress turns
    previews on for that job, every 10 steps (A1111's show_progress_every_n_steps) and at the end.
    """
    active = service.jobs.active()
    if not active:
        return ProgressResponse(0.0, 0.0, _state(None, 0))
    job = next((j for j in active if j.state == JobState.RUNNING), None)
    if job is None:
        return ProgressResponse(0.01, 0.0, _state(None, len(active)))
    if job.preview_every == 0:
        job.preview_every = 10
    state = _state(job, len(active))
    preview = job.preview  # read after the state, so it is at least as new as the step reported
    skip = bottle.request.query.get("skip_current_image", "").strip().lower() in ("true", "1", "yes")
    image = None if skip or preview is None else _preview_png(preview[1])
    fraction = min(1.0, 0.01 + (job.step / job.steps if job.steps else 0.0))  # A1111's 0.01: no division by 0
    return ProgressResponse(round(fraction, 4), round(job.elapsed / fraction - job.elapsed, 3), state,
                            current_image=image)


def _preview_png(images: list[Image.Image]) -> str:
    """A1111's current_image: the previews as one PNG (a grid for several, as A1111's image_grid), base64."""
    from pico.schemas.images import encode_image

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        grid.paste(image, (index % columns * width, index // columns * height))
    return to_base64(encode_image(grid, "png"))


def _state(job: Job | None, count: int) -> dict[str, Any]:
    """A1111's state snapshot for one job (or none)."""
    return {
        "skipped": False,
        "interrupted": bool(job and job.interrupted),
        "stopping_generation": False,
        "job": job.id if job else "",
        "job_count": count,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started)) if job and job.started else "0",
        "job_no": job.part if job else 0,
        "sampling_step": job.step if job else 0,
        "sampling_steps": job.steps if job else 0,
    }
