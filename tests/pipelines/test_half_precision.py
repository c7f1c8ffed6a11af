"""Half precision on shared weights: what only a GPU would show, reproduced in float16 on the CPU.

The engine runs float32 on a CPU, so these tests load the tiny models in float16 themselves,
through the same loader and the same derived task pipelines the engine uses.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pico.pipelines.device import keep_vae_in_float32
from pico.catalog.resolver import ModelSource
from pico.pipelines.loader import load_pipeline
from pico.catalog.models import SD1_MODEL, SDXL_MODEL
from pico.pipelines.registry import RUNNERS, find_runner


def half(tiny_models, model: str):
    return load_pipeline(ModelSource(model, str(tiny_models / model), local=True), torch.float16, offline=True)


def draw(pipe, **extra):
    return pipe("cat", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(1), **extra).images[0]


@pytest.mark.parametrize("model", [SD1_MODEL, SDXL_MODEL])
def test_deriving_task_pipelines_keeps_the_weights_in_half_precision(tiny_models, model):
    # Diffusers' class-level from_pipe casts shared weights to float32 unless told the dtype.
    base = half(tiny_models, model)
    for runner in RUNNERS:
        if runner.name not in ("StableDiffusionImageVariation", "Upscale"):  # other kinds of model
            runner.derive(base)
    assert {name: module.dtype for name, module in base.components.items() if hasattr(module, "dtype")} == {
        name: torch.float16 for name, module in base.components.items() if hasattr(module, "dtype")}


def test_sdxl_vae_is_kept_in_float32_with_the_same_images(tiny_models):
    upcast_per_call = half(tiny_models, SDXL_MODEL)
    kept = half(tiny_models, SDXL_MODEL)
    keep_vae_in_float32(kept.vae)
    before = draw(upcast_per_call)
    after = draw(kept)
    assert kept.vae.dtype == torch.float32 and kept.unet.dtype == torch.float16
    assert np.abs(before - after).max() < 1e-3  # the same float32 decode, latents scaled in float16 first
    image_to_image = find_runner("image-to-image").derive(kept)
    redrawn = image_to_image("cat", image=Image.new("RGB", (64, 64), (200, 120, 60)), strength=0.5,
                             num_inference_steps=4, output_type="np").images[0]
    assert np.isfinite(redrawn).all() and kept.vae.dtype == torch.float32


def test_a_vae_safe_in_half_precision_stays_so(tiny_models):
    vae = half(tiny_models, SDXL_MODEL).vae
    vae.register_to_config(force_upcast=False)  # as madebyollin/sdxl-vae-fp16-fix says of itself
    keep_vae_in_float32(vae)
    assert vae.dtype == torch.float16


def run_while_another_decodes(pipe) -> tuple[list[str], dict[str, np.ndarray], set]:
    """Two calls on pipelines sharing ``pipe``'s weights; the second runs while the first is mid-decode.

    Returns (errors, each call's image, the VAE dtypes seen at each decode's last layer).
    """
    derive = find_runner("stable-diffusion-xl").derive
    first, second = derive(pipe), derive(pipe)
    second.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    in_decode, second_done, errors, images, dtypes = threading.Event(), threading.Event(), [], {}, set()

    def pause_first(module, _args):
        dtypes.add(module.weight.dtype)
        if threading.current_thread().name == "first":
            in_decode.set()
            second_done.wait(30)

    hook = pipe.vae.decoder.conv_out.register_forward_pre_hook(pause_first)

    def call(target, name):
        try:
            images[name] = draw(target)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever broke
            errors.append(f"{name}: {exc}")
        finally:
            if name == "second":
                second_done.set()

    thread = threading.Thread(target=call, args=(first, "first"), name="first")
    thread.start()
    assert in_decode.wait(60)
    call(second, "second")
    thread.join(60)
    hook.remove()
    return errors, images, dtypes


def test_concurrent_sdxl_decodes_on_one_vae(tiny_models):
    # Diffusers casts SDXL's VAE to float32 and back in place around each decode; on shared
    # weights a second call then fed float16 latents to the float32 VAE (or the reverse).
    # PICO keeps the VAE in float32: both calls decode, in float32, to the image one call alone makes.
    pipe = half(tiny_models, SDXL_MODEL)
    keep_vae_in_float32(pipe.vae)
    alone = draw(find_runner("stable-diffusion-xl").derive(pipe))
    errors, images, dtypes = run_while_another_decodes(pipe)
    assert errors == []
    assert dtypes == {torch.float32}
    for name in ("first", "second"):
        assert np.abs(images[name] - alone).max() < 1e-3, name
