"""A1111's upscaling: the extras routes, the upscaler lists, and img2img's "SD upscale" script.

Extras run PICO's upscale pipeline (Lanczos, Nearest, or the SD x4 upscaler model when the
models directory has it) as jobs. "SD upscale" upscales the init image, cuts it into
overlapping tiles of width x height, redraws each with img2img and joins them again, with
A1111's seeds: the tiles of batch b start at seed + b, each next tile of a batch one more.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

from pico.catalog.models import SD_X4_UPSCALER_MODEL
from pico.catalog.pipelines import find_pipeline
from pico.catalog.upscalers import IMAGE_UPSCALERS, LATENT_UPSCALE_MODES, SD_X4
from pico.errors import InvalidRequest
from pico.pipelines.resize import combine_grid, split_grid
from pico.schemas import fields
from pico.schemas.images import decode_image, encode_images, to_base64
from pico.schemas.requests import MAX_SEED, UpscaleRequest, pick_seeds
from pico.server.a1111.options import effective_format
from pico.server.a1111.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasRequest,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    LatentUpscaleModeItem,
    UpscalerItem,
)
from pico.server.errors import in_protocol_terms
from pico.server.http import read_json_body, run_jobs

if TYPE_CHECKING:
    from pico.server.a1111.generation import Call
    from pico.server.service import Service

SD_UPSCALE_DEFAULTS = (None, 64, 0, 2.0)  # the script's arguments: info, overlap, upscaler index, scale


def upscalers(service: "Service") -> list[str]:
    """The upscalers that work here, in A1111's order: None, Lanczos, Nearest, then SD x4 if its model is local."""
    names = list(IMAGE_UPSCALERS)
    try:
        if service.engine.resolver.resolve(SD_X4_UPSCALER_MODEL).local:
            names.append(SD_X4)
    except Exception:  # noqa: BLE001 - not allowed here: not offered
        pass
    return names


def upscaler_items(service: "Service") -> list[UpscalerItem]:
    """GET /sdapi/v1/upscalers."""
    return [UpscalerItem(name, model_name=SD_X4_UPSCALER_MODEL if name == SD_X4 else None) for name in upscalers(service)]


def latent_mode_items() -> list[LatentUpscaleModeItem]:
    """GET /sdapi/v1/latent-upscale-modes."""
    return [LatentUpscaleModeItem(name) for name in LATENT_UPSCALE_MODES]


def find_upscaler(service: "Service", name: Any, field_name: str) -> str:
    """An upscaler by name (any case) or by its index in the upscalers list, as A1111's script takes it."""
    names = upscalers(service)
    if isinstance(name, bool) or name is None:
        name = 0
    if isinstance(name, (int, float)) and int(name) == name and 0 <= int(name) < len(names):
        return names[int(name)]
    found = {n.lower(): n for n in names}.get(str(name).strip().lower())
    if found is None:
        raise InvalidRequest(f"{field_name} {name!r} is not an upscaler PICO has; available: {', '.join(names)}",
                             field=field_name, hint="GET /sdapi/v1/upscalers lists them.")
    return found


def extra_single_image(service: "Service") -> dict:
    """Upscale one image."""
    request = fields.parse(ExtrasSingleImageRequest, read_json_body(service), lenient=True)
    image = decode_image(request.image, "image", service.settings.max_pixels)
    images, notes = run_extras(service, request, [image])
    encoded = [to_base64(data) for data in _encoded(service, images)]
    return ExtrasSingleImageResponse(html_info(request, notes),
                                     encoded[0] if request.show_extras_results else None).to_dict()


def extra_batch_images(service: "Service") -> dict:
    """Upscale several images."""
    request = fields.parse(ExtrasBatchImagesRequest, read_json_body(service), lenient=True)
    images = []
    for index, item in enumerate(request.imageList or []):
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(data, str):
            raise InvalidRequest(f"imageList[{index}] must be an object with a base64 \"data\"", field="imageList")
        images.append(decode_image(data, f"imageList[{index}]", service.settings.max_pixels))
    if not images:
        raise InvalidRequest("imageList must hold at least one image", field="imageList")
    results, notes = run_extras(service, request, images)
    encoded = [to_base64(data) for data in _encoded(service, results)]
    return ExtrasBatchImagesResponse(html_info(request, notes), encoded if request.show_extras_results else []).to_dict()


def _encoded(service: "Service", images: list[Image.Image]) -> list[bytes]:
    """The images in the server's format and PNG compression level, all at once on the encoder threads."""
    return encode_images(images, effective_format(service), [None] * len(images), service.settings.png_compress_level)


def run_extras(service: "Service", request: ExtrasRequest, images: list[Image.Image]) -> tuple[list, list[str]]:
    """The images upscaled as A1111's postprocessing upscale does them, and notes on what was not applied."""
    notes = []
    if request.gfpgan_visibility or request.codeformer_visibility:
        notes.append("GFPGAN and CodeFormer (face restoration) were not applied: PICO has no face restoration.")
    upscaler = find_upscaler(service, request.upscaler_1, "upscaler_1")
    if request.upscaler_2 not in (None, "None") and request.extras_upscaler_2_visibility > 0:
        notes.append(f"upscaler_2 {request.upscaler_2!r} was not applied: PICO upscales with upscaler_1 only.")
    if upscaler == "None":  # A1111: no upscaler, no change
        return images, notes
    requests = []
    for image in images:
        scale = request.upscaling_resize if request.resize_mode == 0 else \
            max(request.upscaling_resize_w / image.width, request.upscaling_resize_h / image.height)
        body = {"Upscaler": upscaler, "Scale": round(scale, 6)}
        try:
            requests.append(UpscaleRequest.parse(body, service.settings.max_pixels, images={"ImageBase64": image}))
        except InvalidRequest as exc:
            raise in_protocol_terms(exc, {"Scale": "upscaling_resize", "ImageBase64": "image"}) from None
    _, generations = run_jobs(service, find_pipeline("upscale"), requests, origin="a1111")
    results = [generation.images[0] for generation in generations]
    if request.resize_mode == 1 and request.upscaling_crop:  # centred on the target, the rest cut off
        width, height = request.upscaling_resize_w, request.upscaling_resize_h
        cropped = []
        for image in results:
            canvas = Image.new("RGB", (width, height))
            canvas.paste(image, (width // 2 - image.width // 2, height // 2 - image.height // 2))
            cropped.append(canvas)
        results = cropped
    return results, notes


def html_info(request: ExtrasRequest, notes: list[str]) -> str:
    """A1111's html_info: the postprocessing parameters, then PICO's notes."""
    if request.resize_mode == 0:
        what = f"Postprocess upscale by: {request.upscaling_resize:g}"
    else:
        what = f"Postprocess upscale to: {request.upscaling_resize_w}x{request.upscaling_resize_h}"
    text = f"<p>{html.escape(what)}, Postprocess upscaler: {html.escape(str(request.upscaler_1))}</p>"
    return text + "".join(f"<p>{html.escape(note)}</p>" for note in notes)


def sd_upscale(service: "Service", call: "Call", init: Image.Image) -> dict:
    """img2img's "SD upscale" script: upscale, redraw in overlapping tiles of width x height, join them."""
    from pico.server.a1111.generation import answer_images, pico_request

    request = call.request
    args = list(request.script_args or []) + list(SD_UPSCALE_DEFAULTS[len(request.script_args or []):])
    overlap, scale = args[1], args[3]
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < min(
            request.width, request.height) // 8 * 8:
        raise InvalidRequest(f"script_args[1] (tile overlap) must be 0 or more and less than the tile, got {overlap!r}",
                             field="script_args")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 8:
        raise InvalidRequest(f"script_args[3] (scale factor) must be above 0 and at most 8, got {scale!r}",
                             field="script_args")
    upscaler = find_upscaler(service, args[2], "script_args")
    if request.mask:
        call.notes.append("SD upscale redraws the whole image: the mask was not used.")
    image = init
    if upscaler != "None":
        body = {"Upscaler": upscaler, "Scale": scale}
        up = UpscaleRequest.parse(body, service.settings.max_pixels, images={"ImageBase64": init})
        _, (generation,) = run_jobs(service, find_pipeline("upscale"), [up], origin="a1111")
        image = generation.images[0]
    tile_w, tile_h = request.width // 8 * 8, request.height // 8 * 8
    if image.width < tile_w or image.height < tile_h:
        raise InvalidRequest(f"The upscaled image ({image.width}x{image.height}) is smaller than a tile "
                             f"({tile_w}x{tile_h})", field="width", hint="Lower width and height, or raise the scale.")
    grid = split_grid(image, tile_w, tile_h, int(overlap))
    tiles = grid.images()
    pipeline = find_pipeline("image-to-image")
    seed = request.seed if request.seed >= 0 else pick_seeds(None, 1)[0]
    requests = []
    for n in range(request.n_iter):
        for index, tile in enumerate(tiles):
            batch, position = divmod(index, request.batch_size)
            pico = pico_request(service, pipeline, call, {"Strength": request.denoising_strength, "Total": 1},
                                {"ImageBase64": tile})
            pico.seed = (seed + n + batch + position) % (MAX_SEED + 1)
            requests.append(pico)
    started = time.time()
    _, generations = run_jobs(service, pipeline, requests, origin="a1111")
    combined, metadata = [], []
    for n in range(request.n_iter):
        done = generations[n * len(tiles):(n + 1) * len(tiles)]
        grid.replace([g.images[0] for g in done])
        result = combine_grid(grid)
        combined.append(result)
        metadata.append({**done[0].metadata[0], "Seed": (seed + n) % (MAX_SEED + 1), "Index": 0,
                         "Width": result.width, "Height": result.height})
    warnings = list(call.notes)
    for generation in generations:
        warnings += [w for w in generation.warnings if w not in warnings]
    return answer_images(service, call, requests[0], combined, metadata, warnings, started)
