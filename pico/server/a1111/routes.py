"""The AUTOMATIC1111 web UI API (/sdapi/v1), so A1111 clients (webuiapi, editor plugins, bots) work.

Each call is translated into PICO requests and run as PICO jobs on the same slots as every
other route (``generation.py``, ``extras.py``); progress, interrupt and skip are views of those
jobs. Errors take A1111's shape in ``errors.py`` (every path under /sdapi/).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import bottle
from PIL import Image

from pico.jobs import Job, JobState
from pico.schemas import fields
from pico.schemas.images import to_base64
from pico.server.a1111 import extras, options
from pico.server.a1111.checkpoints import checkpoint_items, lora_items, refresh
from pico.server.a1111.generation import ORIGIN, img2img, txt2img
from pico.server.a1111.infotext import png_info
from pico.server.a1111.sampling import sampler_items, scheduler_items
from pico.server.a1111.schemas import (
    EmbeddingsResponse,
    LoraItem,
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    ImagesResponse,
    Img2ImgRequest,
    LatentUpscaleModeItem,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    Txt2ImgRequest,
    UpscalerItem,
)
from pico.server.http import read_json_body, send_json
from pico.server.openapi import RouteDoc

if TYPE_CHECKING:
    from pico.server.service import Service

PREFIX = "/sdapi/v1"
TAG = "AUTOMATIC1111 API"
# Features PICO lacks: A1111 lists them, PICO's lists are empty.
EMPTY_LISTS = ("hypernetworks", "face-restorers", "realesrgan-models", "prompt-styles", "extensions")
LIST_SCHEMA = {"type": "array", "items": {"type": "object"}}
OBJECT_SCHEMA = {"type": "object"}


def install(app: bottle.Bottle, service: "Service") -> None:
    """Add the AUTOMATIC1111 routes to ``app``."""

    def route(path: str, method: str, callback, summary: str, request=None, response=None, query=()) -> None:
        app.route(f"{PREFIX}/{path}", method, lambda: send_json(callback()),
                  doc=RouteDoc(summary, TAG, request=request, response=response, errors="a1111", query=query))

    route("txt2img", "POST", lambda: txt2img(service), "Text to image, with hires fix", Txt2ImgRequest,
          ImagesResponse)
    route("img2img", "POST", lambda: img2img(service),
          "Image to image; inpainting when a mask is given; the \"SD upscale\" script", Img2ImgRequest, ImagesResponse)
    route("extra-single-image", "POST", lambda: extras.extra_single_image(service),
          "Upscale an image (Lanczos, Nearest, or the SD x4 upscaler model)", ExtrasSingleImageRequest,
          ExtrasSingleImageResponse)
    route("extra-batch-images", "POST", lambda: extras.extra_batch_images(service), "Upscale several images",
          ExtrasBatchImagesRequest, ExtrasBatchImagesResponse)
    route("sd-models", "GET", lambda: [i.to_dict() for i in checkpoint_items(service)],
          "The checkpoints: the default model, the text-to-image models of the models directory, and the "
          "single-file checkpoints of the checkpoint folders",
          response=_list_of(SDModelItem))
    route("options", "GET", lambda: options.options(service),
          "Settings: A1111's, with what clients wrote; pico_options_without_effect names those PICO only keeps",
          response=OBJECT_SCHEMA)
    route("options", "POST", lambda: options.set_options(service, read_json_body(service)),
          "Change settings: sd_model_checkpoint, sd_vae, CLIP_stop_at_last_layers and samples_format take effect; "
          "every setting is kept and read back", OBJECT_SCHEMA, {"type": "null"})
    route("cmd-flags", "GET", lambda: options.cmd_flags(service.settings),
          "A1111's command-line flags, as this server's settings amount to them", response=OBJECT_SCHEMA)
    route("refresh-checkpoints", "POST", lambda: refresh(service),
          "Rescan the checkpoint and LoRA folders now (changes are also noticed within a second)",
          response={"type": "null"})
    route("refresh-loras", "POST", lambda: refresh(service),
          "Rescan the LoRA and checkpoint folders now (changes are also noticed within a second)",
          response={"type": "null"})
    route("loras", "GET", lambda: lora_items(service), "The LoRA files of the LoRA folders, for <lora:NAME:WEIGHT>",
          response=_list_of(LoraItem))
    route("samplers", "GET", lambda: [item.to_dict() for item in sampler_items()],
          "The samplers: A1111 1.10's that Diffusers can run", response=_list_of(SamplerItem))
    route("schedulers", "GET", lambda: [item.to_dict() for item in scheduler_items()],
          "The schedule types Diffusers can draw; Automatic is each sampler's own", response=_list_of(SchedulerItem))
    route("upscalers", "GET", lambda: [item.to_dict() for item in extras.upscaler_items(service)],
          "The upscalers: None, Lanczos, Nearest, and SD x4 when its model is in the models directory",
          response=_list_of(UpscalerItem))
    route("latent-upscale-modes", "GET", lambda: [item.to_dict() for item in extras.latent_mode_items()],
          "The hires fix's latent upscale modes", response=_list_of(LatentUpscaleModeItem))
    route("sd-vae", "GET", lambda: [item.to_dict() for item in options.vae_items(service)],
          "The VAEs sd_vae can name: the ft-EMA and ft-MSE VAEs of the models directory", response=_list_of(SDVaeItem))
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
    route("scripts", "GET", lambda: ScriptsList(img2img=["sd upscale"]).to_dict(),
          "Script names: img2img's \"SD upscale\"", response=ScriptsList)
    route("script-info", "GET", lambda: [_sd_upscale_info(service)], "The scripts and their arguments",
          response=LIST_SCHEMA)
    route("embeddings", "GET", lambda: EmbeddingsResponse().to_dict(), "Embeddings (PICO loads none)",
          response=EmbeddingsResponse)
    for name in EMPTY_LISTS:
        route(name, "GET", list, f"{name} (PICO has none: always empty)", response=LIST_SCHEMA)
    for name in ("refresh-vae",):
        route(name, "POST", lambda: None, f"{name} (nothing to refresh)", response={"type": "null"})


def _sd_upscale_info(service: "Service") -> dict[str, Any]:
    """A1111's script-info entry of "SD upscale": its arguments as script_args takes them."""
    return {"name": "sd upscale", "is_alwayson": False, "is_img2img": True, "args": [
        {"label": None, "value": None, "minimum": None, "maximum": None, "step": None, "choices": None},
        {"label": "Tile overlap", "value": 64, "minimum": 0, "maximum": 256, "step": 16, "choices": None},
        {"label": "Upscaler", "value": "None", "minimum": None, "maximum": None, "step": None,
         "choices": extras.upscalers(service)},
        {"label": "Scale Factor", "value": 2, "minimum": 0, "maximum": 4, "step": 1, "choices": None},
    ]}


def _interrupt(service: "Service") -> dict:
    """End the running A1111 generations at their next step, and their calls' later batches (A1111 answers {})."""
    service.jobs.interrupt_running(ORIGIN)
    return {}


def _skip(service: "Service") -> None:
    """End the running A1111 generations at their next step; their calls go on with the next batch."""
    service.jobs.skip_running(ORIGIN)


def _list_of(item: type) -> dict:
    return {"type": "array", "items": fields.json_schema(item)}


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
