"""SD 3.5, FLUX.1 and the SDXL refiner through a live `pico serve`: the PICO API, OpenAI's SDK and webuiapi."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import webuiapi
from PIL import Image

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD35_LARGE_MODEL,
    SD35_MEDIUM_MODEL,
    SDXL_MODEL,
    SDXL_REFINER_MODEL,
)
from tests.conftest import b64, png_bytes

SMALL = {"Width": 64, "Height": 64, "Steps": 2}
CPU_NOTE = "Precision 'bfloat16' is not available on the CPU; ran in float32 (Precision 'full')."


def decode(value: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(value)))


def mask_b64() -> str:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize("route, name, model, guidance", [
    ("stable-diffusion-3", "StableDiffusion3", SD35_MEDIUM_MODEL, 4.5),
    ("flux", "Flux", FLUX_SCHNELL_MODEL, 0.0),
])
def test_each_family_route_answers_with_its_defaults(server, route, name, model, guidance):
    reply = server.post(f"/api/v1/{route}", {"Phrase": "ginger cat", "Total": 2, "Seed": 7, **SMALL})
    assert reply.status == 200, reply.body
    images = reply.json["Images"]
    assert [(i["Name"], i["Metadata"]["Seed"]) for i in images] == [(name, 7), (name, 8)]
    meta = images[0]["Metadata"]
    assert (meta["Model"], meta["GuidanceScale"], meta["Scheduler"], meta["Quality"]) == (model, guidance, "Euler", 2)
    assert [decode(i["ImageBase64"]).size for i in images] == [(64, 64)] * 2
    assert reply.json["Warnings"] == [CPU_NOTE]
    embedded = json.loads(decode(images[1]["ImageBase64"]).text["pico"])
    assert embedded["Pipeline"] == route and embedded["Request"]["Quality"] is None


def test_flux_dev_and_sd35_large_by_model(server):
    dev = server.post("/api/v1/flux", {"Phrase": "cat", "Model": FLUX_DEV_MODEL, **SMALL}).json["Images"][0]
    assert (dev["Metadata"]["GuidanceScale"], dev["Metadata"]["MaxSequenceLength"]) == (3.5, 512)
    large = server.post("/api/v1/stable-diffusion-3", {"Phrase": "cat", "Model": SD35_LARGE_MODEL, **SMALL})
    assert large.json["Images"][0]["Metadata"]["GuidanceScale"] == 3.5


@pytest.mark.parametrize("model", [SD35_MEDIUM_MODEL, FLUX_DEV_MODEL], ids=["sd35", "flux-dev"])
def test_image_to_image_and_inpaint_take_the_new_families(server, model):
    image = b64(png_bytes())
    redrawn = server.post("/api/v1/stable-diffusion-image-to-image",
                          {"Phrase": "oil painting", "Model": model, "ImageBase64": image, "Steps": 3})
    inpainted = server.post("/api/v1/stable-diffusion-inpaint", {"Phrase": "a hat", "Model": model,
                                                                  "ImageBase64": image, "MaskImageBase64": mask_b64(),
                                                                  "Steps": 2, "Total": 2, "Seed": 3})
    assert (redrawn.status, inpainted.status) == (200, 200), (redrawn.body, inpainted.body)
    assert decode(redrawn.json["Images"][0]["ImageBase64"]).size == (64, 64)
    assert [i["Metadata"]["Seed"] for i in inpainted.json["Images"]] == [3, 4]
    assert redrawn.json["Images"][0]["Metadata"]["Precision"] == "full"
    assert redrawn.json["Warnings"] == [CPU_NOTE]  # the family's bfloat16 was asked for, not SD's half


def test_the_sdxl_route_runs_a_refiner(server):
    body = {"Phrase": "cat", "Seed": 4, "Steps": 5, "Width": 64, "Height": 64}
    refined = server.post("/api/v1/stable-diffusion-xl", {**body, "Refiner": SDXL_REFINER_MODEL,
                                                          "RefinerSwitchAt": 0.6})
    assert refined.status == 200, refined.body
    meta = refined.json["Images"][0]["Metadata"]
    assert (meta["Refiner"], meta["RefinerSwitchAt"], meta["Quality"]) == (SDXL_REFINER_MODEL, 0.6, 5)
    same_unet = server.post("/api/v1/stable-diffusion-xl", {**body, "Refiner": SDXL_MODEL, "RefinerSwitchAt": 0.6})
    base = server.post("/api/v1/stable-diffusion-xl", body)
    assert decode(same_unet.json["Images"][0]["ImageBase64"]).tobytes() == \
        decode(base.json["Images"][0]["ImageBase64"]).tobytes()


@pytest.mark.parametrize("route, body, field, message", [
    ("flux", {"Scheduler": "DPM++ 2M"}, "Scheduler",
     "Scheduler 'DPM++ 2M' does not fit FLUX.1 schnell models: they are flow-matching models, and the samplers "
     "that fit them are Euler, UniPC"),
    ("stable-diffusion-3", {"Width": 72, "Height": 64}, "Width",
     "Width must be a multiple of 16 for Stable Diffusion 3.x models, got 72"),
    ("stable-diffusion-xl", {"Refiner": SDXL_REFINER_MODEL, "RefinerSwitchAt": 1}, "RefinerSwitchAt",
     "RefinerSwitchAt must be above 0 and below 1 with a Refiner, got 1: at 1 the refiner would do nothing"),
    ("flux", {"Model": SDXL_MODEL, "Width": 64, "Height": 64}, "Model",
     f"Model {SDXL_MODEL} is a SDXL model; flux needs a FLUX.1 model"),
    ("stable-diffusion", {"Model": FLUX_DEV_MODEL}, "Model",
     f"Model {FLUX_DEV_MODEL} is a FLUX.1 model; stable-diffusion runs Stable Diffusion 1, 2 and XL models"),
    ("stable-diffusion-image-to-image", {"Model": FLUX_DEV_MODEL, "ImageBase64": b64(png_bytes()),
                                         "Scheduler": "DDIM"}, "Scheduler",
     "Scheduler 'DDIM' does not fit FLUX.1 dev models: they are flow-matching models, and the samplers that fit "
     "them are Euler, UniPC"),
])
def test_bad_combinations_are_422s_naming_the_field(server, route, body, field, message):
    reply = server.post(f"/api/v1/{route}", {"Phrase": "cat", "Steps": 2, **body})
    assert reply.status == 422, reply.body
    error = reply.json["Error"]
    assert (error["Code"], error["Field"], error["Message"]) == ("INVALID_REQUEST", field, message)


def test_status_reports_what_each_loaded_model_holds(server):
    server.post("/api/v1/flux", {"Phrase": "cat", **SMALL})
    models = {m["Model"]: m for m in server.get("/api/v1/status").json["Models"]}
    flux = models[FLUX_SCHNELL_MODEL]
    assert set(flux["Components"]) == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    assert flux["Bytes"] == sum(flux["Components"].values()) and 0 < flux["Parameters"] * 4 <= flux["Bytes"]
    assert (flux["Precision"], flux["Placement"]) == ("full", "cpu")


def test_openapi_documents_the_routes_and_the_optional_quality(server):
    document = server.get("/openapi.json").json
    schemas = document["components"]["schemas"]
    assert "/api/v1/flux" in document["paths"] and "/api/v1/stable-diffusion-3" in document["paths"]
    quality = schemas["StableDiffusionRequest"]["properties"]["Quality"]
    assert quality["default"] is None and quality["type"] == ["number", "null"]
    assert "SD 1/2/XL: 50, the same as Quality 0.2" in quality["description"]
    assert schemas["FluxRequest"]["properties"]["Precision"]["default"] == "bfloat16"
    assert schemas["StableDiffusionXlRequest"]["properties"]["RefinerSwitchAt"]["default"] == 0.8


# ---- the client libraries ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="any-token", max_retries=0)


@pytest.mark.parametrize("name, model, pipeline", [
    ("sd35", SD35_MEDIUM_MODEL, "stable-diffusion-3"), ("sd35-large", SD35_LARGE_MODEL, "stable-diffusion-3"),
    ("flux-schnell", FLUX_SCHNELL_MODEL, "flux"), ("flux-dev", FLUX_DEV_MODEL, "flux"),
])
def test_openai_short_names_reach_the_family_routes(client, name, model, pipeline):
    result = client.images.generate(model=name, prompt="ginger cat", n=2, size="64x64",
                                    extra_body={"steps": 2, "seed": 5})
    embedded = [json.loads(decode(d.b64_json).text["pico"]) for d in result.data]
    assert [(e["Pipeline"], e["Request"]["Model"], e["Metadata"]["Seed"]) for e in embedded] == [
        (pipeline, model, 5), (pipeline, model, 6)]


def test_openai_edit_with_a_flux_model_inpaints(client):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 0, 64, 64))  # transparent: repaint
    out = io.BytesIO()
    mask.save(out, format="PNG")
    result = client.images.edit(model="flux-dev", prompt="a hat", image=("i.png", png_bytes(), "image/png"),
                                mask=("m.png", out.getvalue(), "image/png"), extra_body={"steps": 2})
    assert json.loads(decode(result.data[0].b64_json).text["pico"])["Pipeline"] == "stable-diffusion-inpaint"


@pytest.fixture(scope="module")
def a1111(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler")


def test_webuiapi_lists_and_runs_the_families(a1111):
    names = a1111.util_get_model_names()
    assert {SD35_MEDIUM_MODEL, SD35_LARGE_MODEL, FLUX_SCHNELL_MODEL, FLUX_DEV_MODEL} <= set(names)
    assert SDXL_REFINER_MODEL not in names  # it cannot draw from a phrase: refiner_checkpoint names it
    result = a1111.txt2img(prompt="ginger cat", seed=3, steps=2, width=64, height=64, cfg_scale=3.5,
                           override_settings={"sd_model_checkpoint": "flux-dev"})
    embedded = json.loads(result.image.info["pico"])
    assert (embedded["Pipeline"], embedded["Request"]["Model"], result.info["sd_model_name"]) == (
        "flux", FLUX_DEV_MODEL, FLUX_DEV_MODEL)
    assert embedded["Metadata"]["GuidanceScale"] == 3.5


def test_a1111_refiner_checkpoint_and_switch_map_to_the_sdxl_refiner(server):
    body = {"prompt": "cat", "steps": 5, "width": 64, "height": 64, "seed": 2, "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": "sdxl"}, "refiner_checkpoint": "sdxl-refiner",
            "refiner_switch_at": 0.6}
    reply = server.post("/sdapi/v1/txt2img", body)
    assert reply.status == 200, reply.body
    meta = json.loads(decode(reply.json["images"][0]).text["pico"])["Metadata"]
    assert (meta["Refiner"], meta["RefinerSwitchAt"]) == (SDXL_REFINER_MODEL, 0.6)
    wrong = server.post("/sdapi/v1/txt2img", {**body, "override_settings": {"sd_model_checkpoint": "sd15"}})
    assert wrong.status == 422
    assert wrong.json["detail"] == "refiner_checkpoint works with SDXL models on txt2img"
