"""The OpenAI Images API, driven by the real `openai` SDK against a live server on the tiny models."""

from __future__ import annotations

import base64
import io
import json
import urllib.request

import openai
import pytest
from PIL import Image

from pico.errors import NotFound
from pico.server.openai.store import URL_TTL_SECONDS, ResultStore
from tests.conftest import png_bytes
from tests.live import Background

FAST = {"steps": 2}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="any-token", max_retries=0)


def decode(b64_json: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64_json)))


def png_file(size=(64, 64), color=(200, 40, 40), mode="RGB") -> tuple[str, bytes, str]:
    return ("image.png", png_bytes(size, color, mode), "image/png")


def test_generate_n_images_as_base64(client):
    result = client.images.generate(model="sd15", prompt="ginger cat", n=2, size="64x64",
                                    response_format="b64_json", extra_body={**FAST, "seed": 9})
    assert len(result.data) == 2
    images = [decode(d.b64_json) for d in result.data]
    assert [i.size for i in images] == [(64, 64), (64, 64)]
    assert [json.loads(i.text["pico"])["Metadata"]["Seed"] for i in images] == [9, 10]
    assert result.created > 0


def test_generate_accepts_openai_only_fields_and_models(client):
    result = client.images.generate(model="dall-e-3", prompt="ginger cat", quality="hd", style="vivid",
                                    user="someone", size="auto", extra_body=FAST)
    image = decode(result.data[0].b64_json)
    embedded = json.loads(image.text["pico"])
    assert embedded["Request"]["Model"] == "runwayml/stable-diffusion-v1-5"
    # size auto: the model's native size (64x64 for the tiny SD 1.5), as a request without Width/Height gets
    assert (embedded["Request"]["Width"], embedded["Request"]["Height"]) == (None, None)
    assert image.size == (64, 64) and result.size == "64x64"


def test_generations_are_jobs_named_in_x_pico_job(client, server):
    raw = client.images.with_raw_response.generate(prompt="cat", n=2, size="64x64",
                                                   extra_body={**FAST, "seed": 4})
    job = server.get(f"/api/v1/jobs/{raw.headers['x-pico-job']}").json
    assert (job["State"], job["Pipeline"], job["Images"], job["Seeds"]) == ("done", "stable-diffusion", 2, [4, 5])
    assert len(raw.parse().data) == 2


def test_the_default_model_serves_requests_that_name_none(operations):
    # --default-model sd2 on that server
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{operations.port}/v1", api_key="any", max_retries=0)
    for model in (openai.NOT_GIVEN, "dall-e-2"):
        result = client.images.generate(prompt="cat", model=model, size="64x64", extra_body=FAST)
        assert json.loads(decode(result.data[0].b64_json).text["pico"])["Request"]["Model"] == \
            "stabilityai/stable-diffusion-2-1"


def test_generate_sdxl_by_short_name_with_sd_extras(client):
    result = client.images.generate(model="sdxl", prompt="cat", size="64x64", extra_body={
        **FAST, "negative_prompt": "dog", "guidance_scale": 4.0, "scheduler": "Euler a", "seed": 3})
    meta = json.loads(decode(result.data[0].b64_json).text["pico"])["Metadata"]
    assert (meta["Model"], meta["NegativePhrase"], meta["GuidanceScale"], meta["Scheduler"], meta["Seed"]) == (
        "stabilityai/stable-diffusion-xl-base-1.0", "dog", 4.0, "Euler a", 3)


def test_generate_as_url_served_by_this_server(client, server):
    result = client.images.generate(prompt="cat", size="64x64", response_format="url", output_format="webp",
                                    extra_body=FAST)
    url = result.data[0].url
    assert url.startswith(f"http://127.0.0.1:{server.port}/v1/images/files/") and url.endswith(".webp")
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Type"] == "image/webp"
        assert Image.open(io.BytesIO(response.read())).format == "WEBP"
    missing = server.get("/v1/images/files/nothing.png")
    assert missing.status == 404 and missing.json["error"]["code"] == "not_found"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_image_urls_expire_after_an_hour():
    clock = Clock()
    store = ResultStore(clock=clock)
    token = store.put(b"png bytes", "png")
    assert URL_TTL_SECONDS == 3600
    clock.now += 3600 - 1
    assert store.get(token) == ("png", b"png bytes")
    clock.now += 2
    with pytest.raises(NotFound) as caught:
        store.get(token)
    assert caught.value.message == "This image URL has expired or never existed; image URLs last one hour"


def test_the_image_url_store_is_bounded_and_drops_the_oldest_first():
    store = ResultStore(clock=Clock(), max_bytes=10)
    tokens = [store.put(bytes([index]) * 4, "png") for index in range(4)]  # 16 bytes into 10
    with pytest.raises(NotFound):
        store.get(tokens[0])
    with pytest.raises(NotFound):
        store.get(tokens[1])
    assert [store.get(token)[1] for token in tokens[2:]] == [b"\x02" * 4, b"\x03" * 4]


def test_edit_without_mask_is_image_to_image(client):
    result = client.images.edit(image=png_file((64, 48)), prompt="cat", extra_body={**FAST, "strength": 0.5})
    image = decode(result.data[0].b64_json)
    embedded = json.loads(image.text["pico"])
    assert embedded["Pipeline"] == "stable-diffusion-image-to-image"
    assert embedded["Metadata"]["Strength"] == 0.5
    assert image.size == (64, 48)


def test_edit_with_mask_is_inpainting_and_transparent_means_repaint(client):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent: repaint it
    out = io.BytesIO()
    mask.save(out, "PNG")
    result = client.images.edit(image=[png_file()], mask=("mask.png", out.getvalue(), "image/png"), prompt="cat",
                                n=2, extra_body=FAST)
    assert len(result.data) == 2
    assert json.loads(decode(result.data[0].b64_json).text["pico"])["Pipeline"] == "stable-diffusion-inpaint"


def test_repaint_mask_conversion():
    from pico.server.openai.routes import _repaint_mask

    mask = Image.new("RGBA", (4, 1), (0, 0, 0, 255))
    mask.putpixel((0, 0), (0, 0, 0, 0))
    mask.putpixel((1, 0), (255, 255, 255, 100))
    assert list(_repaint_mask(mask).getdata()) == [255, 255, 0, 0]
    opaque = Image.new("RGBA", (2, 1), (255, 255, 255, 255))
    opaque.putpixel((1, 0), (0, 0, 0, 255))
    assert list(_repaint_mask(opaque).getdata()) == [255, 0]  # no transparency: white already means repaint


def test_variation(client):
    result = client.images.create_variation(image=png_file(), n=2, extra_body=FAST)
    assert len(result.data) == 2
    assert json.loads(decode(result.data[1].b64_json).text["pico"])["Pipeline"] == "stable-diffusion-image-variation"


def test_bad_input_is_400_bad_request_and_not_retried(client, server):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="cat", n=9)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "n"
    assert caught.value.body["message"] == "n must be between 1 and 5, got 9"
    assert caught.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="cat", size="100x64")
    assert caught.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=("x.png", b"not an image", "image/png"), prompt="cat")
    assert caught.value.body["param"] == "image"


def test_errors_speak_openai_parameter_names(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=png_file(), prompt="cat", extra_body={"steps": 1, "strength": 0.5})
    assert caught.value.body["param"] == "strength"
    assert caught.value.body["message"] == ("strength 0.5 with 1 step leaves no denoising step to run "
                                            "(int(1 x 0.5) = 0) (Raise steps to at least 2, or strength to at least 1.)")


def test_unknown_model_is_a_permission_or_not_found_error(client):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.images.generate(prompt="cat", model="someone/else")
    assert caught.value.body["code"] == "model_not_allowed"


def test_unknown_route_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.models.list()


def test_busy_is_429_with_retry_after(client, server):
    with server.held():
        first = Background(client.images.generate, prompt="cat", size="64x64", extra_body=FAST)
        server.wait_for_jobs("running")
        with pytest.raises(openai.RateLimitError) as caught:
            client.images.generate(prompt="cat", extra_body=FAST)
    assert len(first.result().data) == 1
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body["code"] == "gpu_busy"


def test_api_key_is_the_bearer_token(keyed):
    from tests.server.conftest import API_KEY

    base = f"http://127.0.0.1:{keyed.port}/v1"
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).images.generate(prompt="cat", extra_body=FAST)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "unauthorized"
    result = openai.OpenAI(base_url=base, api_key=API_KEY, max_retries=0).images.generate(
        prompt="cat", size="64x64", response_format="url", extra_body=FAST)
    with urllib.request.urlopen(result.data[0].url) as response:  # no key: an <img> tag sends none
        assert Image.open(io.BytesIO(response.read())).size == (64, 64)
