"""Request parsing: defaults, every validation error, Quality -> steps, the JSON Schema."""

from __future__ import annotations

import pytest

from pico.errors import InvalidRequest, MalformedRequest
from pico.schemas.fields import json_schema
from pico.schemas.requests import (
    StableDiffusion2Request,
    StableDiffusionImageToImageRequest,
    StableDiffusionImageVariationRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)
from tests.conftest import b64, png_bytes

MAX_PIXELS = 2048 * 2048


def parse(cls, body):
    return cls.parse(body, MAX_PIXELS)


def error_of(cls, body) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(cls, body)
    return caught.value


def test_defaults_are_the_originals():
    sd = parse(StableDiffusionRequest, {"Phrase": "ginger cat"})
    assert (sd.model, sd.total, sd.seed, sd.guidance_scale, sd.quality, sd.precision, sd.vae_type,
            sd.attention_slicing, sd.negative_phrase) == (
        "runwayml/stable-diffusion-v1-5", 1, None, 7.5, None, "half", "original", False, None)
    assert sd.step_count() == 50  # neither Steps nor Quality: the family's 50, what Quality 0.2 gave before
    assert parse(StableDiffusion2Request, {"Phrase": "x"}).model == "stabilityai/stable-diffusion-2-1"
    xl = parse(StableDiffusionXlRequest, {"Phrase": "x"})
    assert (xl.model, xl.guidance_scale) == ("stabilityai/stable-diffusion-xl-base-1.0", 5.0)
    image = b64(png_bytes())
    i2i = parse(StableDiffusionImageToImageRequest, {"Phrase": "x", "ImageBase64": image})
    assert (i2i.model, i2i.strength, i2i.guidance_scale, i2i.precision) == (
        "runwayml/stable-diffusion-v1-5", 0.8, 7.5, "half")  # null defaults settled by the model's family
    var = parse(StableDiffusionImageVariationRequest, {"ImageBase64": image})
    assert (var.model, var.guidance_scale) == ("lambdalabs/sd-image-variations-diffusers", 3.0)
    inp = parse(StableDiffusionInpaintRequest, {"Phrase": "x", "ImageBase64": image, "MaskImageBase64": image})
    assert inp.model == "runwayml/stable-diffusion-inpainting"


@pytest.mark.parametrize("quality, steps", [(0.2, 50), (1.0, 250), (0.0, 1), (0.001, 1), (0.5, 125), (0.11, 28)])
def test_quality_is_a_fraction_of_250_steps(quality, steps):
    assert parse(StableDiffusionRequest, {"Phrase": "x", "Quality": quality}).step_count() == steps


def test_steps_overrides_quality():
    assert parse(StableDiffusionRequest, {"Phrase": "x", "Quality": 1.0, "Steps": 7}).step_count() == 7


def test_unknown_fields_are_listed_not_rejected():
    request = parse(StableDiffusionRequest, {"Phrase": "x", "Totl": 3, "zzz": None})
    assert request.ignored_fields == ["Totl", "zzz"]
    assert request.total == 1


@pytest.mark.parametrize("body, field, message", [
    ({}, "Phrase", "Phrase is required"),
    ({"Phrase": ""}, "Phrase", "Phrase is required and must not be empty"),
    ({"Phrase": 5}, "Phrase", "Phrase must be a string, got 5"),
    ({"Phrase": "x", "Total": 9}, "Total", "Total must be between 1 and 5, got 9"),
    ({"Phrase": "x", "Total": 0}, "Total", "Total must be between 1 and 5, got 0"),
    ({"Phrase": "x", "Total": "2"}, "Total", "Total must be an integer between 1 and 5, got the string '2'"),
    ({"Phrase": "x", "Total": 1.5}, "Total", "Total must be an integer between 1 and 5, got 1.5"),
    ({"Phrase": "x", "Total": True}, "Total", "Total must be an integer between 1 and 5, got true"),
    ({"Phrase": "x", "GuidanceScale": 10.5}, "GuidanceScale", "GuidanceScale must be between 0 and 10, got 10.5"),
    ({"Phrase": "x", "GuidanceScale": None}, "GuidanceScale",
     "GuidanceScale must not be null; leave it out to get the default"),
    ({"Phrase": "x", "Quality": 1.2}, "Quality", "Quality must be between 0 and 1, got 1.2"),
    ({"Phrase": "x", "Quality": float("nan")}, "Quality", "Quality must be a number between 0 and 1, got nan"),
    ({"Phrase": "x", "Seed": -2}, "Seed", "Seed must be between -1 and 4294967295, got -2"),
    ({"Phrase": "x", "Seed": 2**32}, "Seed", "Seed must be between -1 and 4294967295, got 4294967296"),
    ({"Phrase": "x", "Precision": "double"}, "Precision", "Precision must be one of 'half', 'full', 'bfloat16', got the string 'double'"),
    ({"Phrase": "x", "VaeType": "xl"}, "VaeType", "VaeType must be one of 'original', 'ema', 'mse', got the string 'xl'"),
    ({"Phrase": "x", "AttentionSlicing": "yes"}, "AttentionSlicing",
     "AttentionSlicing must be true or false, got the string 'yes'"),
    ({"Phrase": "x", "Width": 100, "Height": 64}, "Width", "Width must be a multiple of 8, got 100"),
    ({"Phrase": "x", "Width": 8192, "Height": 64}, "Width", "Width must be between 64 and 4096, got 8192"),
    ({"Phrase": "x", "Width": 512}, "Height", "Height must be given together with Width"),
    ({"Phrase": "x", "Width": 4096, "Height": 4096}, "Width",
     "Width x Height is 4096x4096 (16,777,216 pixels); the limit is 4,194,304 pixels"),
    ({"Phrase": "x", "Steps": 251}, "Steps", "Steps must be between 1 and 250, got 251"),
    ({"Phrase": "x", "Model": "../../etc/passwd"}, "Model",
     "Model must be a model id of the form org/name, got '../../etc/passwd'"),
    ({"Phrase": "x", "Model": "/abs/path"}, "Model", "Model must be a model id of the form org/name, got '/abs/path'"),
    ({"Phrase": "x", "Model": "org/.."}, "Model", "Model must be a model id of the form org/name, got 'org/..'"),
    ({"Phrase": "x", "OutputFormat": "gif"}, "OutputFormat",
     "OutputFormat must be one of 'png', 'jpeg', 'webp', got the string 'gif'"),
])
def test_validation_errors_name_the_field(body, field, message):
    error = error_of(StableDiffusionRequest, body)
    assert (error.field, error.message, error.status, error.code) == (field, message, 422, "INVALID_REQUEST")


def test_unknown_scheduler_lists_the_known_ones():
    error = error_of(StableDiffusionRequest, {"Phrase": "x", "Scheduler": "Euler b"})
    assert error.field == "Scheduler"
    assert "'Euler a'" in error.message and "'DPM++ 2M Karras'" in error.message and "'UniPC'" in error.message


def test_choices_are_case_insensitive():
    request = parse(StableDiffusionRequest, {"Phrase": "x", "Precision": "FULL", "Scheduler": "euler A"})
    assert (request.precision, request.scheduler) == ("full", "Euler a")


def test_misspelt_required_field_gets_a_hint():
    error = error_of(StableDiffusionRequest, {"phrase": "x"})
    assert error.hint == "The body has 'phrase'; field names are case-sensitive: use 'Phrase'"


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_must_be_an_object(body):
    with pytest.raises(MalformedRequest) as caught:
        parse(StableDiffusionRequest, body)
    assert caught.value.status == 400


def test_sdxl_refuses_sd_vaes():
    error = error_of(StableDiffusionXlRequest, {"Phrase": "x", "VaeType": "ema"})
    assert error.field == "VaeType"
    assert error.message.startswith("VaeType 'ema' does not fit SDXL model stabilityai/stable-diffusion-xl-base-1.0")


@pytest.mark.parametrize("value, message", [
    ("!!!not base64!!!", "ImageBase64 is not valid base64"),
    (b64(b"hello, not an image"), "ImageBase64 is not an image in a format PICO can read (PNG, JPEG, WebP, ...)"),
    (b64(png_bytes()[:60]), None),
    ("data:image/png,abc", "ImageBase64 is a data: URL that is not base64-encoded"),
])
def test_bad_images_are_refused(value, message):
    error = error_of(StableDiffusionImageToImageRequest, {"Phrase": "x", "ImageBase64": value})
    assert error.field == "ImageBase64"
    if message:
        assert error.message == message


def test_images_over_the_pixel_limit_are_refused():
    big = b64(png_bytes((300, 300)))
    with pytest.raises(InvalidRequest) as caught:
        StableDiffusionImageToImageRequest.parse({"Phrase": "x", "ImageBase64": big}, 200 * 200)
    assert caught.value.message == "ImageBase64 is 300x300 (90,000 pixels); the limit is 40,000 pixels"


def test_images_accept_data_urls_and_mask_is_resized():
    image = b64(png_bytes((64, 48)))
    mask = "data:image/png;base64," + b64(png_bytes((32, 32), 255, "L"))
    request = parse(StableDiffusionInpaintRequest, {"Phrase": "x", "ImageBase64": image, "MaskImageBase64": mask})
    assert request.images["ImageBase64"].size == (64, 48)
    assert request.images["MaskImageBase64"].size == (64, 48)
    assert request.images["MaskImageBase64"].mode == "L"


def test_parameters_leave_out_image_payloads():
    image = b64(png_bytes())
    params = parse(StableDiffusionImageToImageRequest, {"Phrase": "x", "ImageBase64": image}).parameters()
    assert "ImageBase64" not in params
    assert params["Phrase"] == "x" and params["Strength"] == 0.8


def test_json_schema_comes_from_the_same_specs():
    schema = json_schema(StableDiffusionInpaintRequest)
    props = schema["properties"]
    assert schema["required"] == ["Phrase", "ImageBase64", "MaskImageBase64"]
    assert props["Total"] == {"type": "integer", "description": "Number of images.", "minimum": 1, "maximum": 5,
                              "default": 1}
    assert props["Seed"]["type"] == ["integer", "null"]
    assert props["Width"]["multipleOf"] == 8
    assert props["Precision"]["enum"] == ["half", "full", "bfloat16", None]  # null: the model family's
    assert props["ImageBase64"]["contentEncoding"] == "base64"
    assert "Images" not in props and "IgnoredFields" not in props


def test_decompression_bombs_are_refused_before_decoding():
    import io

    from PIL import Image

    def compressed(size) -> str:
        out = io.BytesIO()
        Image.new("1", size).save(out, "PNG")  # megapixels of nothing in a few kB
        assert len(out.getvalue()) < 200_000
        return b64(out.getvalue())

    error = error_of(StableDiffusionImageToImageRequest, {"Phrase": "x", "ImageBase64": compressed((5000, 5000))})
    assert error.message == "ImageBase64 is 5000x5000 (25,000,000 pixels); the limit is 4,194,304 pixels"
    error = error_of(StableDiffusionImageToImageRequest, {"Phrase": "x", "ImageBase64": compressed((20000, 20000))})
    assert error.message == ("ImageBase64 is far over the limit of 4,194,304 pixels and was not decoded "
                             "(a decompression bomb?)")


def test_truncated_image_is_refused():
    error = error_of(StableDiffusionImageToImageRequest,
                     {"Phrase": "x", "ImageBase64": b64(png_bytes((64, 64))[:-40])})
    assert error.field == "ImageBase64"
    assert error.message.startswith("ImageBase64 could not be decoded as an image")


@pytest.mark.parametrize("cls, body, message, hint", [
    (StableDiffusionImageToImageRequest, {"Steps": 1},
     "Strength 0.8 with 1 step leaves no denoising step to run (int(1 x 0.8) = 0)",
     "Raise Steps to at least 2, or Strength to at least 1."),
    (StableDiffusionImageToImageRequest, {"Steps": 3, "Strength": 0.3},
     "Strength 0.3 with 3 steps leaves no denoising step to run (int(3 x 0.3) = 0)",
     "Raise Steps to at least 4, or Strength to at least 0.334."),
    (StableDiffusionInpaintRequest, {"Quality": 0.01, "Strength": 0.2},
     "Strength 0.2 with 2 steps leaves no denoising step to run (int(2 x 0.2) = 0)",
     "Raise Steps to at least 5, or Strength to at least 0.5."),
    (StableDiffusionImageToImageRequest, {"Steps": 1, "Strength": 0.001},
     "Strength 0.001 with 1 step leaves no denoising step to run (int(1 x 0.001) = 0)",
     "Raise Strength to at least 1."),
    (StableDiffusionImageToImageRequest, {"Steps": 1, "Strength": 1e-300},  # once looped for ever
     "Strength 1e-300 with 1 step leaves no denoising step to run (int(1 x 1e-300) = 0)",
     "Raise Strength to at least 1."),
    (StableDiffusionInpaintRequest, {"Steps": 2, "Strength": 5e-324},  # 1 / Strength overflows
     "Strength 4.94066e-324 with 2 steps leaves no denoising step to run (int(2 x 4.94066e-324) = 0)",
     "Raise Strength to at least 0.5."),
    (StableDiffusionInpaintRequest, {"Strength": 0},
     "Strength 0 leaves the image as it is: there is nothing to generate",
     "Use a Strength above 0 (0.1 changes the image a little)."),
])
def test_strength_must_leave_a_denoising_step(cls, body, message, hint):
    # Diffusers runs int(steps x strength) steps and crashes on zero; refuse before any work.
    image = b64(png_bytes())
    error = error_of(cls, {"Phrase": "x", "ImageBase64": image, "MaskImageBase64": image, **body})
    assert (error.field, error.message, error.hint) == ("Strength", message, hint)


@pytest.mark.parametrize("steps, strength", [(2, 0.5), (1, 1.0), (4, 0.25), (250, 0.004)])
def test_one_denoising_step_is_enough(steps, strength):
    request = parse(StableDiffusionImageToImageRequest,
                    {"Phrase": "x", "ImageBase64": b64(png_bytes()), "Steps": steps, "Strength": strength})
    assert int(request.step_count() * request.strength) == 1


@pytest.mark.parametrize("cls, pipeline", [(StableDiffusionImageToImageRequest, "image-to-image"),
                                           (StableDiffusionInpaintRequest, "inpainting")])
def test_image_inputs_must_give_an_image_size(cls, pipeline):
    tiny = b64(png_bytes((7, 64)))
    error = error_of(cls, {"Phrase": "x", "ImageBase64": tiny, "MaskImageBase64": tiny})
    assert (error.field, error.message, error.hint) == (
        "ImageBase64",
        f"ImageBase64 is 7x64; {pipeline} draws at the input's size rounded down to a multiple of 8, "
        "so each side needs at least 8 pixels",
        "Send a larger image, or give Width and Height to resize it.")
    resized = parse(cls, {"Phrase": "x", "ImageBase64": tiny, "MaskImageBase64": tiny, "Width": 64, "Height": 64})
    assert resized.images["ImageBase64"].size == (7, 64)  # resized to Width x Height by the runner
