"""The A1111 API's lenient parsing (pydantic 1's conversions, ranges kept) and nested objects (Hires)."""

from __future__ import annotations

import pytest

from pico.errors import InvalidRequest
from pico.schemas import fields
from pico.schemas.requests import StableDiffusionRequest
from pico.server.a1111.schemas import Img2ImgRequest, Txt2ImgRequest

MAX_PIXELS = 4096 * 4096


@pytest.mark.parametrize("value, expected", [
    (False, 0), (True, 1), (0, 0), (1, 1), ("1", 1), (1.0, 1), ("0", 0),
])
def test_bool_or_int_where_a1111_takes_an_int(value, expected):
    assert fields.parse(Img2ImgRequest, {"inpainting_mask_invert": value, "init_images": ["x"]},
                        lenient=True).inpainting_mask_invert \
        == expected


@pytest.mark.parametrize("value, expected", [
    (0, False), (1, True), ("true", True), ("False", False), ("yes", True), ("off", False), (1.0, True), ("0", False),
])
def test_bool_from_what_pydantic_1_reads_as_one(value, expected):
    assert fields.parse(Txt2ImgRequest, {"enable_hr": value}, lenient=True).enable_hr is expected


def test_numbers_and_numeric_strings():
    request = fields.parse(Txt2ImgRequest, {"steps": "20", "cfg_scale": 7, "width": 512.0, "height": "512",
                                            "seed": 42.9, "denoising_strength": "0.5", "prompt": 12,
                                            "n_iter": True}, lenient=True)
    assert (request.steps, request.cfg_scale, request.width, request.height) == (20, 7.0, 512, 512)
    assert isinstance(request.cfg_scale, float) and request.seed == 42  # int() truncates, as pydantic 1 does
    assert (request.denoising_strength, request.prompt, request.n_iter) == (0.5, "12", 1)


def test_null_means_the_default():
    request = fields.parse(Img2ImgRequest, {"mask": None, "steps": None, "mask_blur": None, "init_images": ["x"]},
                           lenient=True)
    assert (request.mask, request.steps, request.mask_blur) == (None, 50, None)


@pytest.mark.parametrize("body, message", [
    ({"steps": 0}, "steps must be between 1 and 250, got 0"),
    ({"steps": "0"}, "steps must be between 1 and 250, got 0"),
    ({"inpainting_mask_invert": 2}, "inpainting_mask_invert must be between 0 and 1, got 2"),
    ({"enable_hr": 2}, "enable_hr must be true or false, got 2"),
    ({"enable_hr": "maybe"}, "enable_hr must be true or false, got the string 'maybe'"),
    ({"steps": "twenty"}, "steps must be an integer between 1 and 250, got the string 'twenty'"),
    ({"cfg_scale": "nan"}, "cfg_scale must be a number between 0 and 10, got the string 'nan'"),
    ({"prompt": ["a"]}, "prompt must be a string, got an array"),
])
def test_ranges_and_types_are_still_checked(body, message):
    cls = Img2ImgRequest if "inpainting_mask_invert" in body else Txt2ImgRequest
    with pytest.raises(InvalidRequest) as caught:
        fields.parse(cls, {"init_images": ["x"], **body} if cls is Img2ImgRequest else body, lenient=True)
    assert caught.value.message == message


@pytest.mark.parametrize("body, field", [
    ({"Phrase": "x", "Steps": "20"}, "Steps"),
    ({"Phrase": "x", "Steps": 20.5}, "Steps"),
    ({"Phrase": "x", "AttentionSlicing": 1}, "AttentionSlicing"),
    ({"Phrase": "x", "GuidanceScale": "7"}, "GuidanceScale"),
    ({"Phrase": "x", "Seed": None}, None),
])
def test_pico_api_stays_strict(body, field):
    if field is None:
        assert StableDiffusionRequest.parse(body, MAX_PIXELS).seed is None
        return
    with pytest.raises(InvalidRequest) as caught:
        StableDiffusionRequest.parse(body, MAX_PIXELS)
    assert caught.value.field == field


def test_nested_hires_object():
    request = StableDiffusionRequest.parse({"Phrase": "x", "Width": 64, "Height": 64,
                                            "Hires": {"Scale": 2, "Upscaler": "latent (bicubic)", "Steps": 20,
                                                      "Strength": 0.5, "Extra": 1}}, MAX_PIXELS)
    hires = request.hires
    assert (hires.scale, hires.upscaler, hires.steps, hires.strength) == (2.0, "Latent (bicubic)", 20, 0.5)
    assert request.ignored_fields == ["Hires.Extra"]
    assert fields.to_wire(request)["Hires"]["Upscaler"] == "Latent (bicubic)"


@pytest.mark.parametrize("hires, field, message", [
    ({"Scale": 5}, "Hires.Scale", "Hires.Scale must be between 1 and 4, got 5"),
    ({"Upscaler": "ESRGAN"}, "Hires.Upscaler", "Hires.Upscaler must be one of"),
    ("2x", "Hires", "Hires must be an object, got the string '2x'"),
    ({"Strength": -0.1}, "Hires.Strength", "Hires.Strength must be between 0 and 1, got -0.1"),
    ({"Scale": 4}, "Hires", "The hires fix makes 4096x4096 images; the limit is 4,194,304 pixels"),
])
def test_nested_errors_name_the_nested_field(hires, field, message):
    with pytest.raises(InvalidRequest) as caught:
        StableDiffusionRequest.parse({"Phrase": "x", "Steps": 20, "Width": 1024, "Height": 1024, "Hires": hires},
                                     2048 * 2048)
    assert caught.value.field == field and caught.value.message.startswith(message), caught.value.message


@pytest.mark.parametrize("size, hires, target", [
    ((512, 512), {"Scale": 2}, (1024, 1024, 0, 0)),
    ((512, 768), {"Scale": 1.5}, (768, 1152, 0, 0)),
    ((512, 512), {"Width": 1024}, (1024, 1024, 0, 0)),
    ((512, 768), {"Height": 1152}, (768, 1152, 0, 0)),
    ((512, 512), {"Width": 1024, "Height": 768}, (1024, 1024, 0, 256)),  # A1111 covers the target, then crops
    ((768, 512), {"Width": 1024, "Height": 1024}, (1536, 1024, 512, 0)),
])
def test_hires_target_size_as_a1111_computes_it(size, hires, target):
    request = StableDiffusionRequest.parse({"Phrase": "x", "Width": size[0], "Height": size[1], "Hires": hires},
                                           10 ** 8)
    assert request.hires.target_size(*size) == target


def test_hires_is_off_the_wire_of_image_to_image():
    from pico.schemas.requests import StableDiffusionImageToImageRequest, StableDiffusionInpaintRequest

    for cls in (StableDiffusionImageToImageRequest, StableDiffusionInpaintRequest):
        assert "Hires" not in [fields.wire_name(f.name) for f in fields.wire_fields(cls)]
    assert "Hires" in fields.json_schema(StableDiffusionRequest)["properties"]
