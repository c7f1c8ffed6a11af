"""``pico serve``: the REST API on Cheroot, with the original's runtime arguments."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pico.cli.app import (
    AllowAnyModel,
    AllowModel,
    Demo,
    Device,
    MaxModels,
    ModelsDir,
    Offload,
    Verbose,
    Xformers,
    app,
    flag,
    load_settings,
)

SERVER = "Server"
SPEED = "Speed-ups (GPU)"
RAY = "More than one machine (Ray)"


@app.command()
def serve(
    host: Annotated[Optional[str], flag(
        "--host", help="The address to listen on.", default="0.0.0.0", panel=SERVER)] = None,
    port: Annotated[Optional[int], flag(
        "--port", "-p", help="The port to listen on.", default="5088", panel=SERVER)] = None,
    verbose: Verbose = None,
    threadsmax: Annotated[Optional[int], flag(
        "--threadsmax", "-t", help="Generations that may run at once (1 to 64).", default="1", panel=SERVER)] = None,
    queue: Annotated[Optional[int], flag(
        "--queue", help="Requests that may wait for a slot, in arrival order; beyond that: 503 GPU_BUSY.",
        default="0", panel=SERVER)] = None,
    max_body_mb: Annotated[Optional[int], flag(
        "--max-body-mb", help="Largest request body accepted, in MB (413 beyond).", default="32",
        panel=SERVER)] = None,
    cors_origin: Annotated[Optional[str], flag(
        "--cors-origin", help="Origins browsers may call from: * or a comma-separated list.", default="*",
        panel=SERVER)] = None,
    api_key: Annotated[Optional[str], flag(
        "--api-key", help="Require this key: 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (health, /docs and "
        "/openapi.json stay open).", panel=SERVER)] = None,
    default_model: Annotated[Optional[str], flag(
        "--default-model", help="Model for OpenAI and A1111 requests that name none: sd15, sd2, sdxl or an id.",
        default="sd15", panel=SERVER)] = None,
    shutdown_timeout: Annotated[Optional[int], flag(
        "--shutdown-timeout", help="Seconds running generations get to finish on SIGTERM/Ctrl-C.", default="60",
        panel=SERVER)] = None,
    batch_window_ms: Annotated[Optional[int], flag(
        "--batch-window-ms", help="Dynamic batching: text-to-image requests that could share a call (same model, "
        "size, steps, sampler, guidance) and arrive within this many ms run as one. 0 turns it off.",
        default="0", panel=SERVER)] = None,
    max_batch: Annotated[Optional[int], flag(
        "--max-batch", help="Most images in one batched call (a request with more runs alone).", default="4",
        panel=SERVER)] = None,
    max_header_kb: Annotated[Optional[int], flag(
        "--max-header-kb", help="Largest request line and headers accepted, in KiB (431 beyond; 414 for a "
        "request line alone).", default="64", panel=SERVER)] = None,
    header_timeout: Annotated[Optional[int], flag(
        "--header-timeout", help="Seconds a connection gets to send its whole request line and headers (408 "
        "beyond); a connection still sending holds no worker thread.", default="10", panel=SERVER)] = None,
    public_url: Annotated[Optional[str], flag(
        "--public-url", help="The base URL clients reach this server at, e.g. https://images.example.com: "
        "response_format=url links start with it.", panel=SERVER)] = None,
    trust_proxy: Annotated[Optional[bool], flag(
        "--trust-proxy", help="Build links from X-Forwarded-Host and X-Forwarded-Proto (only without "
        "--public-url; only behind a proxy that sets them).", panel=SERVER)] = None,
    max_streams: Annotated[Optional[int], flag(
        "--max-streams", help="Event streams (GET /api/v1/jobs/<id>/events) open at once; each holds a server "
        "thread. Beyond: 503.", default="16", panel=SERVER)] = None,
    preload: Annotated[Optional[list[str]], flag(
        "--preload", help="Load this model (and run a short warm-up generation) before serving; repeatable.",
        panel=SPEED, many=True)] = None,
    channels_last: Annotated[Optional[bool], flag(
        "--channels-last", help="Channels-last memory layout for the UNet and VAE.", panel=SPEED)] = None,
    fuse_qkv: Annotated[Optional[bool], flag(
        "--fuse-qkv", help="Fuse the attention QKV projections.", panel=SPEED)] = None,
    compile: Annotated[Optional[bool], flag(
        "--compile", help="torch.compile the UNet; compiling takes minutes, so pair it with --preload.",
        panel=SPEED)] = None,
    compile_mode: Annotated[Optional[str], flag(
        "--compile-mode", help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune, "
        "max-autotune-no-cudagraphs.", default="default", panel=SPEED)] = None,
    sdxl_vae: Annotated[Optional[str], flag(
        "--sdxl-vae", help="An fp16-safe SDXL VAE for SDXL in half precision (no float32 upcast), e.g. "
        "madebyollin/sdxl-vae-fp16-fix.", panel=SPEED)] = None,
    max_pixels: Annotated[Optional[int], flag(
        "--max-pixels", help="Largest input image and Width x Height, in pixels.", default="4194304 = 2048x2048",
        panel=SERVER)] = None,
    ray: Annotated[Optional[str], flag(
        "--ray", help="Run the generations on a Ray cluster: local (start one on this machine), auto (the one "
        "'ray start --head' made, on one of its nodes) or HEAD:6379 (its GCS address). Needs pip install "
        "'pico[ray]'.", panel=RAY)] = None,
    replicas: Annotated[Optional[int], flag(
        "--replicas", help="With --ray: engine replicas, each on one GPU (or a share of the CPUs) with "
        "--threadsmax slots and its own --max-models cache.", default="1", panel=RAY)] = None,
    min_replicas: Annotated[Optional[int], flag(
        "--min-replicas", help="With --ray and --max-replicas: the fewest replicas Serve's autoscaling keeps.",
        default="0", panel=RAY)] = None,
    max_replicas: Annotated[Optional[int], flag(
        "--max-replicas", help="With --ray: autoscale between --min-replicas and this many replicas on ongoing "
        "requests (instead of a fixed --replicas).", panel=RAY)] = None,
    xformers: Xformers = None,
    models_dir: ModelsDir = None,
    allow_model: AllowModel = None,
    allow_any_model: AllowAnyModel = None,
    device: Device = None,
    offload: Offload = None,
    max_models: MaxModels = None,
    demo: Demo = None,
) -> None:
    """Serve the REST APIs until SIGTERM or Ctrl-C (running generations finish first).

    The PICO API: GET /api/v1/health, /api/v1/status, /api/v1/jobs/<id>, and POST
    /api/v1/<pipeline> for stable-diffusion, stable-diffusion-2, stable-diffusion-xl,
    stable-diffusion-image-to-image, stable-diffusion-image-variation and stable-diffusion-inpaint.
    Also the OpenAI Images API (/v1/images/...), the AUTOMATIC1111 API (/sdapi/v1/...),
    /openapi.json, /docs and /metrics.

    Example: pico serve --demo, then
    curl -H 'Content-Type: application/json' -d '{"Phrase":"ginger cat"}' http://127.0.0.1:5088/api/v1/stable-diffusion-xl
    """
    settings = load_settings(
        host=host, port=port, verbose=verbose, threadsmax=threadsmax, queue=queue, max_body_mb=max_body_mb,
        cors_origin=cors_origin, shutdown_timeout=shutdown_timeout, api_key=api_key, default_model=default_model,
        xformers=xformers, models_dir=models_dir,
        device=device, offload=offload, max_models=max_models, demo=demo, max_pixels=max_pixels,
        batch_window_ms=batch_window_ms, max_batch=max_batch, max_streams=max_streams, preload=preload,
        channels_last=channels_last,
        fuse_qkv=fuse_qkv, compile=compile, compile_mode=compile_mode, sdxl_vae=sdxl_vae,
        allow_model=allow_model, allow_any_model=allow_any_model, max_header_kb=max_header_kb,
        header_timeout=header_timeout, public_url=public_url, trust_proxy=trust_proxy,
        ray=ray, replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
    )
    from pico.server.serve import serve as run_server

    raise typer.Exit(run_server(settings))
