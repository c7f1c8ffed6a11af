"""A1111's options round-trip; sd_vae, CLIP_stop_at_last_layers and samples_format take effect; cmd-flags.

A server of its own: these tests change settings every later request would see.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import webuiapi
from PIL import Image

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 17, "prompt": "ginger cat"}


@pytest.fixture(scope="module")
def live(serve):
    """A server of its own (fresh): nobody else sees the options these tests change."""
    server = serve(fresh=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(live):
    return webuiapi.WebUIApi(host="127.0.0.1", port=live.port, sampler="Euler")


def pico_pixels(live, route: str, body: dict) -> np.ndarray:
    reply = live.post(f"/api/v1/{route}", body)
    assert reply.status == 200, reply.json
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(reply.json["Images"][0]["ImageBase64"]))))


def a1111_pixels(api, **body) -> np.ndarray:
    return np.asarray(api.txt2img(**{**SMALL, **body}).image)


PICO_BODY = {"Phrase": "ginger cat", "Seed": 17, "Steps": 2, "Width": 64, "Height": 64, "GuidanceScale": 7.0,
             "Scheduler": "Euler Uniform"}


def test_options_round_trip_as_a1111s_test_writes_them(live, api):
    before = api.get_options()
    assert {"send_seed", "samples_format", "sd_vae", "CLIP_stop_at_last_layers", "eta_noise_seed_delta",
            "sd_model_checkpoint"} <= set(before)
    try:
        assert live.post("/sdapi/v1/options", {"send_seed": not before["send_seed"], "my_extension_key": [1, 2],
                                               "eta_noise_seed_delta": 31337}).status == 200
        after = api.get_options()
        assert (after["send_seed"], after["my_extension_key"], after["eta_noise_seed_delta"]) == (
            not before["send_seed"], [1, 2], 31337)
        assert {"send_seed", "eta_noise_seed_delta", "my_extension_key"} <= set(after["pico_options_without_effect"])
        assert "sd_vae" not in after["pico_options_without_effect"]
    finally:
        api.set_options({"send_seed": before["send_seed"], "eta_noise_seed_delta": 0})


@pytest.mark.parametrize("body, status, detail", [
    ({"sd_vae": "no-such-vae"}, 404, "VAE 'no-such-vae' not found; available: Automatic, None, sd-vae-ft-ema, "),
    ({"CLIP_stop_at_last_layers": 13}, 422, "CLIP_stop_at_last_layers must be an integer between 1 and 12, got 13"),
    ({"sd_model_checkpoint": "nope/nothing"}, 404, "Checkpoint 'nope/nothing' not found"),
])
def test_options_pico_cannot_honour_are_refused(live, body, status, detail):
    reply = live.post("/sdapi/v1/options", body)
    assert reply.status == status and reply.json["detail"].startswith(detail)


def test_clip_skip_is_picos_clipskip_on_sd1(live, api):
    skipped = pico_pixels(live, "stable-diffusion", {**PICO_BODY, "ClipSkip": 2})
    try:
        api.set_options({"CLIP_stop_at_last_layers": 2})
        result = api.txt2img(**SMALL)
        assert np.array_equal(np.asarray(result.image), skipped) and result.info["clip_skip"] == 2
        assert "Clip skip: 2" in result.info["infotexts"][0]
    finally:
        api.set_options({"CLIP_stop_at_last_layers": 1})
    assert not np.array_equal(a1111_pixels(api), skipped)


def test_clip_skip_is_ignored_on_sdxl_as_a1111_ignores_it(live, api):
    sdxl = {"override_settings": {"sd_model_checkpoint": "sdxl"}}
    plain = a1111_pixels(api, **sdxl)
    skipped = a1111_pixels(api, override_settings={"sd_model_checkpoint": "sdxl", "CLIP_stop_at_last_layers": 2})
    assert np.array_equal(plain, skipped)


def test_sd_vae_swaps_the_vae_as_vaetype_does(live, api):
    assert api.get_sd_vae() == [{"model_name": "sd-vae-ft-ema", "filename": "stabilityai/sd-vae-ft-ema"},
                                {"model_name": "sd-vae-ft-mse", "filename": "stabilityai/sd-vae-ft-mse"}]
    mse = pico_pixels(live, "stable-diffusion", {**PICO_BODY, "VaeType": "mse"})
    overridden = a1111_pixels(api, override_settings={"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"})
    assert np.array_equal(overridden, mse)
    assert not np.array_equal(a1111_pixels(api), mse)  # the override was for that request only
    sdxl = api.txt2img(**SMALL, override_settings={"sd_model_checkpoint": "sdxl", "sd_vae": "sd-vae-ft-mse"})
    assert sdxl.info["warnings"][0] == ("sd_vae 'sd-vae-ft-mse' is an SD 1/2 VAE; "
                                        "stabilityai/stable-diffusion-xl-base-1.0 used its own.")


def test_samples_format_is_the_encoding_of_the_answer(live, api):
    try:
        api.set_options({"samples_format": "jpg"})
        assert api.txt2img(**SMALL).image.format == "JPEG"
        assert api.txt2img(**SMALL, override_settings={"samples_format": "webp"}).image.format == "WEBP"
        result = api.txt2img(**SMALL, override_settings={"samples_format": "avif"})
        assert result.image.format == "PNG" and result.info["warnings"][0].startswith("samples_format 'avif'")
    finally:
        api.set_options({"samples_format": "png"})
    assert api.txt2img(**SMALL).image.format == "PNG"


def test_override_settings_can_stay(api):
    try:
        result = api.txt2img(**SMALL, override_settings={"samples_format": "jpeg", "face_restoration": True},
                             override_settings_restore_afterwards=False)
        assert result.info["warnings"][0] == "override_settings face_restoration have no effect in PICO."
        assert api.get_options()["samples_format"] == "jpeg"
    finally:
        api.set_options({"samples_format": "png", "face_restoration": False})


def test_cmd_flags(live, api):
    flags = api.get_cmd_flags()
    assert (flags["api"], flags["nowebui"], flags["port"], flags["medvram"], flags["lowvram"]) == (
        True, True, live.port, False, False)
    assert flags["ckpt_dir"] is None and flags["data_dir"] is None  # no server path
    assert {"xformers", "listen", "no_half", "api_auth", "opt_sdp_attention", "skip_torch_cuda_test"} <= set(flags)
