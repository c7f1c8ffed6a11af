"""A1111's inpainting around the pipeline: mask blur, paste back, "only masked", fill."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from pico.pipelines.inpaint_areas import blur_mask, crop_region, fill, plan_inpaint
from pico.schemas.requests import StableDiffusionInpaintRequest
from tests.pipelines.test_reproducibility import pixels

MAX_PIXELS = 2048 * 2048


def b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def square_mask(size=(64, 64), box=(20, 16, 44, 48)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def picture(size=(64, 64)) -> Image.Image:
    return Image.fromarray((np.random.RandomState(3).rand(size[1], size[0], 3) * 255).astype(np.uint8))


def opencv_gaussian(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """OpenCV's GaussianBlur along one axis, written out: kernel 2*int(2.5s+0.5)+1, BORDER_REFLECT_101."""
    half = int(2.5 * sigma + 0.5)
    kernel = np.exp(-np.arange(-half, half + 1) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    padded = np.pad(values, pad, mode="reflect")  # numpy's "reflect" is OpenCV's REFLECT_101
    out = np.zeros_like(values, dtype=np.float64)
    for i, weight in enumerate(kernel):
        out += weight * (padded[:, i:i + values.shape[1]] if axis == 1 else padded[i:i + values.shape[0], :])
    return out


def test_mask_blur_is_a1111s_gaussian_across_then_down():
    mask = square_mask()
    expected = opencv_gaussian(np.asarray(mask, dtype=np.float64), 4, axis=1)
    expected = opencv_gaussian(np.clip(np.rint(expected), 0, 255), 4, axis=0)
    blurred = np.asarray(blur_mask(mask, 4, 4), dtype=np.int64)
    assert np.abs(blurred - np.clip(np.rint(expected), 0, 255)).max() <= 1
    assert blurred[32, 32] == 255 and blurred[32, 0] == 0 and 0 < blurred[32, 20] < 255


def test_crop_region_widens_to_the_processing_aspect():
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (100, 200, 228, 232))  # A1111's own example: a 128x32 mask drawn at 512x512 becomes 128x128
    assert crop_region(mask, 0, 512, 512) == (100, 152, 228, 280)
    assert crop_region(mask, 8, 512, 512) == (92, 144, 236, 288)
    assert crop_region(Image.new("L", (64, 64), 0), 0, 64, 64) is None


def test_fill_paints_the_masked_area_from_around_it():
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    image.paste((0, 0, 255), (32, 0, 64, 64))  # blue where the mask repaints
    filled = fill(image, square_mask(box=(32, 0, 64, 64)))
    red, _, blue = filled.getpixel((48, 32))
    assert red > 150 and blue < 60  # the blue is gone: surrounded by red


def test_without_a1111_options_the_inputs_go_through_untouched():
    image, mask = picture(), square_mask()
    plan = plan_inpaint(image, mask, (64, 64))
    assert plan.image is image and plan.mask is mask and plan.finish(image) is image


def inpaint(engine, **body):
    body = {"Phrase": "x", "Seed": 2, "Steps": 3, "Strength": 1.0, "ImageBase64": b64(picture(body.pop("size", (64, 64)))),
            "MaskImageBase64": b64(body.pop("mask", square_mask())), **body}
    return engine.generate(StableDiffusionInpaintRequest.parse(body, MAX_PIXELS))


@pytest.mark.parametrize("model", ["runwayml/stable-diffusion-inpainting", "runwayml/stable-diffusion-v1-5"])
def test_keep_unmasked_pastes_the_input_back_through_the_blurred_mask(engine, model):
    plain = pixels(inpaint(engine, Model=model).images)[0]
    kept = pixels(inpaint(engine, Model=model, KeepUnmasked=True).images)[0]
    blurred = pixels(inpaint(engine, Model=model, KeepUnmasked=True, MaskBlur=4).images)[0]
    original = np.asarray(picture())
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(kept[outside], original[outside]) and not np.array_equal(plain[outside], original[outside])
    assert np.array_equal(kept[~outside], plain[~outside])  # inside: what the pipeline drew
    edge = (32, 18)  # two pixels inside the mask's left edge: the blur mixes drawn and original pixels there
    assert not np.array_equal(blurred[edge], kept[edge]) and np.array_equal(blurred[0, 0], original[0, 0])


def test_only_masked_draws_the_area_around_the_mask_and_pastes_it_into_the_whole(engine):
    generation = inpaint(engine, size=(128, 96), mask=square_mask((128, 96), (40, 30, 72, 62)),
                         InpaintArea="masked", MaskPadding=8, Width=64, Height=64)
    result = pixels(generation.images)[0]
    original = np.asarray(picture((128, 96)))
    assert generation.images[0].size == (128, 96)  # the input's size, as A1111's "only masked"
    outside = np.asarray(square_mask((128, 96), (40, 30, 72, 62))) == 0
    assert np.array_equal(result[outside], original[outside]) and not np.array_equal(result[~outside],
                                                                                      original[~outside])


def test_a_black_mask_with_only_masked_draws_the_whole_picture_and_says_so(engine):
    generation = inpaint(engine, mask=Image.new("L", (64, 64), 0), InpaintArea="masked")
    assert generation.warnings[-1] == "InpaintArea 'masked' needs a mask with some white; the whole picture was drawn."
