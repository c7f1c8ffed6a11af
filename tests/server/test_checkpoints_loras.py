"""Checkpoints and LoRAs over HTTP: the PICO API, the A1111 API (webuiapi) and the OpenAI SDK give the same pixels.

One live server on the tiny models with extra checkpoint and LoRA folders, as a user with an
A1111 or ComfyUI tree would start it: a pickle, a damaged file, a name two folders share, and an
SDXL LoRA beside the demo files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil

import numpy as np
import openai
import pytest
import webuiapi
from PIL import Image

from pico.catalog.models import SD1_MODEL
from tests.live import tiny_server, wait_until

COMMON = {"Phrase": "ginger cat", "Steps": 3, "Seed": 7, "GuidanceScale": 7, "Width": 64, "Height": 64,
          "Scheduler": "Euler Uniform"}  # what A1111 runs for sampler "Euler" (its own schedule: Uniform)


@pytest.fixture(scope="module")
def folders(tiny_models, tmp_path_factory):
    from pico.pipelines.tiny_loras import write_tiny_lora

    root = tmp_path_factory.mktemp("a1111-tree")
    a1111, comfy, loras = root / "a1111", root / "comfy", root / "lora-extra"
    for folder in (a1111, comfy, loras):
        folder.mkdir()
    (a1111 / "old.ckpt").write_bytes(b"\x80\x04never unpickled")
    (a1111 / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for folder in (a1111, comfy):
        shutil.copy(tiny_models / "checkpoints" / "tiny-sd15.safetensors", folder / "twin.safetensors")
    write_tiny_lora(tiny_models / "stabilityai/stable-diffusion-xl-base-1.0", loras / "xl-style.safetensors",
                    format="kohya")
    return root


@pytest.fixture(scope="module")
def live(tiny_models, folders, tmp_path_factory):
    server = tiny_server(tiny_models, "--checkpoint-dir", str(folders / "a1111"), "--checkpoint-dir",
                        str(folders / "comfy"), "--lora-dir", str(folders / "lora-extra"),
                        env={"PICO_CACHE_DIR": str(tmp_path_factory.mktemp("pico-cache"))},
                        log=tmp_path_factory.mktemp("log") / "serve.log")
    yield server
    server.stop()


def decoded(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def pico(live, route: str = "stable-diffusion", **body):
    reply = live.post(f"/api/v1/{route}", {**COMMON, **body})
    assert reply.status == 200, reply.body
    return reply.json["Images"][0]


def test_a_checkpoint_by_name_draws_what_its_folder_draws_and_says_so_in_the_image(live, tiny_models):
    by_folder = pico(live, Model=SD1_MODEL)
    by_file = pico(live, Model="tiny-sd15")
    np.testing.assert_array_equal(decoded(by_file["ImageBase64"]), decoded(by_folder["ImageBase64"]))
    digest = hashlib.sha256((tiny_models / "checkpoints" / "tiny-sd15.safetensors").read_bytes()).hexdigest()
    assert by_file["Metadata"]["Checkpoint"] == {"Name": "tiny-sd15.safetensors", "Hash": digest[:10]}
    png = Image.open(io.BytesIO(base64.b64decode(by_file["ImageBase64"])))
    assert f"Model hash: {digest[:10]}, Model: tiny-sd15" in png.info["parameters"]
    status = live.get("/api/v1/status").json
    assert "tiny-sd15.safetensors (float32)" in status["LoadedModels"]


def test_the_pico_field_an_a1111_tag_and_openai_extra_body_draw_the_same_lora(live):
    field = pico(live, Loras=[{"Name": "add-detail", "Weight": 0.7}])
    plain = pico(live)
    assert not np.array_equal(decoded(field["ImageBase64"]), decoded(plain["ImageBase64"]))
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port)
    a1111 = api.txt2img(prompt="ginger cat <lora:add-detail:0.7>", steps=3, seed=7, cfg_scale=7, width=64,
                        height=64, sampler_name="Euler")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0)
    generated = client.images.generate(model="sd15", prompt="ginger cat", size="64x64", extra_body={
        "loras": [{"name": "add-detail", "weight": 0.7}], "seed": 7, "steps": 3, "guidance_scale": 7,
        "scheduler": "Euler Uniform"})
    short = client.images.generate(model="sd15", prompt="ginger cat", size="64x64", extra_body={
        "loras": ["add-detail:0.7"], "seed": 7, "steps": 3, "guidance_scale": 7, "scheduler": "Euler Uniform"})
    expected = decoded(field["ImageBase64"])
    np.testing.assert_array_equal(np.asarray(a1111.image.convert("RGB")), expected)
    np.testing.assert_array_equal(decoded(generated.data[0].b64_json), expected)
    np.testing.assert_array_equal(decoded(short.data[0].b64_json), expected)
    assert 'Lora hashes: "add-detail: ' in a1111.info["infotexts"][0]
    assert field["Metadata"]["Loras"][0]["Name"] == "add-detail.safetensors"


def test_webuiapi_switches_to_a_checkpoint_by_its_title(live):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port)
    pico(live, Model="tiny-sd15")  # loaded once: its hash is known, so its title carries it
    titles = api.util_get_model_names()
    title = next(t for t in titles if t.startswith("tiny-sd15.safetensors ["))
    item = next(m for m in api.get_sd_models() if m["title"] == title)
    assert item["filename"] == "tiny-sd15.safetensors" and item["model_name"] == "tiny-sd15"
    assert len(item["hash"]) == 10 and item["sha256"].startswith(item["hash"])
    try:
        api.util_set_model(title)
        assert api.util_get_current_model() == title
        result = api.txt2img(prompt="ginger cat", steps=3, seed=7, cfg_scale=7, width=64, height=64,
                             sampler_name="Euler")
        assert result.info["sd_model_name"] == "tiny-sd15.safetensors"
        assert result.info["sd_model_hash"] == item["hash"]
        np.testing.assert_array_equal(np.asarray(result.image.convert("RGB")),
                                      decoded(pico(live, Model=SD1_MODEL)["ImageBase64"]))
    finally:
        api.util_set_model(SD1_MODEL)
    assert api.util_get_current_model() == SD1_MODEL


def test_listings_show_names_families_and_why_a_file_cannot_be_used_never_a_server_path(live, folders,
                                                                                       tiny_models):
    reply = live.get("/api/v1/models")
    body = reply.body.decode()
    assert str(folders) not in body and str(tiny_models) not in body
    listing = reply.json
    checkpoints = {(c["Folder"], c["Name"]): c for c in listing["Checkpoints"]}
    assert checkpoints[("checkpoints", "sdxl/tiny-sdxl.safetensors")]["Family"] == "sdxl"
    assert checkpoints[("checkpoints", "sdxl/tiny-sdxl.safetensors")]["Pipelines"] == [
        "stable-diffusion-xl", "stable-diffusion-image-to-image", "stable-diffusion-inpaint"]
    assert checkpoints[("a1111", "old.ckpt")]["Status"] == "refused"
    assert checkpoints[("a1111", "broken.safetensors")]["Status"] == "broken"
    loras = {lora["Name"]: lora for lora in listing["Loras"]}
    assert (loras["style/pixel-art.safetensors"]["Family"], loras["xl-style.safetensors"]["Family"]) == ("sd1", "sdxl")
    assert {"Id", "Kind", "Family", "Pipelines", "Loaded"} <= set(listing["Models"][0])
    a1111_loras = live.get("/sdapi/v1/loras").json
    assert {(item["name"], item["path"]) for item in a1111_loras} >= {("pixel-art", "style/pixel-art.safetensors"),
                                                                       ("add-detail", "add-detail.safetensors")}
    shutil.copy(tiny_models / "loras" / "add-detail.safetensors", folders / "lora-extra" / "fresh.safetensors")
    assert live.post("/sdapi/v1/refresh-loras").status == 200
    assert "fresh" in {item["name"] for item in live.get("/sdapi/v1/loras").json}
    shutil.copy(tiny_models / "checkpoints" / "tiny-sd15.safetensors", folders / "comfy" / "fresh-model.safetensors")
    assert live.post("/sdapi/v1/refresh-checkpoints").status == 200
    assert "fresh-model.safetensors" in {item["filename"] for item in live.get("/sdapi/v1/sd-models").json}


def test_checkpoints_are_hashed_in_the_background_without_being_loaded(live, folders):
    expected = hashlib.sha256((folders / "a1111" / "twin.safetensors").read_bytes()).hexdigest()
    def hashed_twin():
        return next((m for m in live.get("/sdapi/v1/sd-models").json
                     if m["filename"] == "twin.safetensors" and m["sha256"]), None)

    twin = wait_until(hashed_twin, what="the background hash of twin.safetensors")
    assert (twin["sha256"], twin["hash"], twin["title"]) == (expected, expected[:10],
                                                             f"twin.safetensors [{expected[:10]}]")
    assert "Loaded" not in twin and not any(m["Loaded"] for m in live.get("/api/v1/models").json["Checkpoints"]
                                            if m["Name"] == "twin.safetensors")


BAD_REQUESTS = [
    ({"Model": "../tiny-sd15"}, 422, "Model", "Model must be a model id (org/name) or a checkpoint's name"),
    ({"Model": "old"}, 422, "Model", "Checkpoint old.ckpt cannot be used: "),
    ({"Model": "broken"}, 422, "Model", "Checkpoint broken.safetensors cannot be used: "),
    ({"Model": "twin"}, 422, "Model", "Checkpoint 'twin' matches 2 files: twin.safetensors in a1111"),
    ({"Model": "sdxl/tiny-sdxl"}, 422, "Model", "Checkpoint sdxl/tiny-sdxl.safetensors is an SDXL model"),
    ({"Model": "no-such-checkpoint"}, 404, "Model", "Checkpoint 'no-such-checkpoint' was not found"),
    ({"Loras": [{"Name": "nothing"}]}, 404, "Loras[0].Name", "LoRA 'nothing' was not found"),
    ({"Loras": [{"Name": "xl-style"}]}, 422, "Loras[0].Name", "LoRA xl-style.safetensors is for SDXL models"),
    ({"Loras": [{"Name": "../add-detail"}]}, 422, "Loras[0].Name", "Loras[0].Name '../add-detail' has"),
    ({"Loras": [{"Name": "add-detail", "Weight": 5}]}, 422, "Loras[0].Weight", "Loras[0].Weight must be between"),
    ({"Phrase": "cat <lora:add-detail:x>"}, 422, "Phrase", "The weight 'x' in <lora:add-detail:x> is not a number"),
]


@pytest.mark.parametrize("body, status, field, message", BAD_REQUESTS)
def test_bad_names_files_and_families_are_refused_with_the_right_status(live, folders, body, status, field,
                                                                       message):
    reply = live.post("/api/v1/stable-diffusion", {**COMMON, **body})
    assert reply.status == status, reply.body
    error = reply.json["Error"]
    assert error["Field"] == field and error["Message"].startswith(message), error
    assert str(folders) not in reply.body.decode()


def test_openai_errors_name_its_own_parameters(live):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="sd15", prompt="cat", size="64x64", extra_body={"loras": [{"name": "nothing"}]})
    assert missing.value.body["param"] == "loras[0].name"
    with pytest.raises(openai.BadRequestError) as weight:
        client.images.generate(model="sd15", prompt="cat", size="64x64",
                               extra_body={"loras": [{"name": "add-detail", "weight": 9}]})
    assert weight.value.body["param"] == "loras[0].weight"
    assert json.dumps(weight.value.body).count("loras[0].weight") >= 2  # the message says it too
