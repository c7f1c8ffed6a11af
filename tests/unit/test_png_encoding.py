"""PNG encoding: the fast writer's files decode to the same pixels and carry the text every reader reads."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import png as pypng  # pypng: a strict pure-Python reader (checks every CRC)
import pytest
from PIL import Image
from typer.testing import CliRunner

from pico.schemas import images, png
from pico.schemas.images import (
    A1111_CHUNK,
    PICO_CHUNK,
    a1111_parameters,
    encode_image,
    encode_images,
    read_parameters,
)

REPO = Path(__file__).resolve().parents[2]
needs_isal = pytest.mark.skipif(png.isal_zlib is None, reason="isal has no wheel here: Pillow writes levels 1-3")
MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
PARAMETERS = {
    "Pipeline": "stable-diffusion",
    "Request": {"Phrase": "a ginger cat, «ü» 😀", "NegativePhrase": "blur", "Seed": 41, "Steps": 2},
    "Metadata": {"Phrase": "a ginger cat, «ü» 😀", "NegativePhrase": "blur", "Quality": 2, "Scheduler": "ddim",
                 "GuidanceScale": 7.5, "Seed": 42, "Width": 53, "Height": 37, "Model": "sd15", "Index": 1},
}


def random_image(mode: str, size=(53, 37), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if MODES[mode] == 1 else (size[1], size[0], MODES[mode])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def smooth_image(size=(64, 48)) -> Image.Image:
    """A gradient with an edge: a picture deflate compresses, unlike noise."""
    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    rgb[:, size[0] // 2:] //= 2
    return Image.fromarray(rgb, "RGB")


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking the signature, each length and each CRC."""
    assert data[:8] == png.SIGNATURE
    found, at = [], 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert len(body) == length and crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        at += 12 + length
    assert at == len(data) and found[-1] == (b"IEND", b"")
    return found


def scanline_filters(data: bytes) -> set[int]:
    """The filter types the rows of a PNG (8-bit, no interlace) were stored with."""
    found = chunks(data)
    width, height, _, color_type = struct.unpack(">IIBB", found[0][1][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = zlib.decompress(b"".join(body for kind, body in found if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, width * channels + 1)
    return set(rows[:, 0].tolist())


def decoded_by_pypng(data: bytes) -> np.ndarray:
    width, height, rows, info = pypng.Reader(bytes=data).read_flat()
    planes = info["planes"]
    shape = (height, width) if planes == 1 else (height, width, planes)
    return np.asarray(rows, np.uint8).reshape(shape)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("level", range(10))
def test_every_level_decodes_to_the_same_pixels_in_pillow_and_pypng(mode, level):
    image = random_image(mode, seed=level)
    data = encode_image(image, "png", PARAMETERS, level)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == mode
        assert np.array_equal(np.asarray(opened), np.asarray(image))
    assert np.array_equal(decoded_by_pypng(data), np.asarray(image))


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (3, 2)])
def test_tiny_and_thin_images_round_trip(size):
    image = random_image("RGB", size)
    for level in (0, 1):
        data = encode_image(image, "png", PARAMETERS, level)
        assert np.array_equal(decoded_by_pypng(data), np.asarray(image))


@needs_isal
def test_the_text_chunks_are_byte_for_byte_those_pillow_wrote():
    image = smooth_image()
    ours = chunks(encode_image(image, "png", PARAMETERS, 1))
    text = [(PICO_CHUNK, json.dumps(PARAMETERS, ensure_ascii=False)),
            (A1111_CHUNK, a1111_parameters(PARAMETERS["Metadata"]))]
    pillows = chunks(png.pillow_png(image, text, 1))
    assert [kind for kind, _ in ours] == [b"IHDR", b"iTXt", b"iTXt", b"IDAT", b"IEND"]
    assert [c for c in ours if c[0] != b"IDAT"] == [c for c in pillows if c[0] != b"IDAT"]


def test_every_reader_reads_the_parameters(tmp_path):
    data = encode_image(smooth_image(), "png", PARAMETERS, 1)
    expected_text = a1111_parameters(PARAMETERS["Metadata"])
    assert read_parameters(data) == {"pico": PARAMETERS, "parameters": expected_text}
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.text == {PICO_CHUNK: json.dumps(PARAMETERS, ensure_ascii=False), A1111_CHUNK: expected_text}
    strict = {body.split(b"\0", 1)[0]: body.split(b"\0", 5)[-1].decode("utf-8")
              for kind, body in pypng.Reader(bytes=data).chunks() if kind == b"iTXt"}
    assert strict == {b"pico": json.dumps(PARAMETERS, ensure_ascii=False), b"parameters": expected_text}

    from pico.server.a1111.infotext import png_info
    info = png_info(images.to_base64(data), 2048 * 2048)
    assert info.info == expected_text
    assert json.loads(info.items["pico"]) == PARAMETERS
    assert (info.parameters["Prompt"], info.parameters["Seed"], info.parameters["Size-1"]) == (
        PARAMETERS["Metadata"]["Phrase"], "42", "53")

    from pico.cli import app
    path = tmp_path / "made.png"
    path.write_bytes(data)
    shown = CliRunner().invoke(app, ["info", "--json", str(path)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {"path": str(path), "pico": PARAMETERS, "parameters": expected_text}


@needs_isal
def test_level_0_is_stored_1_to_3_are_up_filtered_isal_and_4_to_9_are_pillows_own_file():
    image = smooth_image((256, 128))
    raw_size = 128 * (256 * 3 + 1)
    stored = encode_image(image, "png", None, 0)
    idat = b"".join(body for kind, body in chunks(stored) if kind == b"IDAT")
    assert len(idat) > raw_size and scanline_filters(stored) == {png.FILTER_NONE}
    sizes = {}
    for level in (1, 2, 3):
        data = encode_image(image, "png", None, level)
        assert scanline_filters(data) == {png.FILTER_UP}
        sizes[level] = len(data)
        assert sizes[level] < raw_size / 4
    for level in range(4, 10):
        assert encode_image(image, "png", PARAMETERS, level) == png.pillow_png(
            image, [(PICO_CHUNK, json.dumps(PARAMETERS, ensure_ascii=False)),
                    (A1111_CHUNK, a1111_parameters(PARAMETERS["Metadata"]))], level)


def test_images_the_writer_does_not_cover_are_written_by_pillow():
    palette = smooth_image().convert("P")
    grey16 = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 7)
    assert grey16.mode == "I;16"
    profiled = smooth_image()
    profiled.info["icc_profile"] = b"not really a profile, but Pillow keeps it"
    keyed = smooth_image()
    keyed.info["transparency"] = (1, 2, 3)
    for image in (palette, grey16, profiled, keyed):
        data = encode_image(image, "png", PARAMETERS, 1)
        assert data == png.pillow_png(image, [(PICO_CHUNK, json.dumps(PARAMETERS, ensure_ascii=False)),
                                              (A1111_CHUNK, a1111_parameters(PARAMETERS["Metadata"]))], 1)
        assert read_parameters(data)["pico"] == PARAMETERS
    assert b"iCCP" in [kind for kind, _ in chunks(encode_image(profiled, "png", None, 1))]


def test_without_isal_pillow_writes_levels_1_to_3(monkeypatch):
    image = smooth_image()
    monkeypatch.setattr(png, "isal_zlib", None)
    for level in (1, 2, 3):
        assert encode_image(image, "png", None, level) == png.pillow_png(image, [], level)
    assert scanline_filters(encode_image(image, "png", None, 0)) == {png.FILTER_NONE}  # stdlib zlib: still ours


def test_a_failed_isal_import_falls_back_to_pillow_with_the_same_text_and_pixels():
    script = (
        "import sys; sys.modules['isal'] = None\n"  # import isal now raises ImportError
        "import io, json, numpy as np; from PIL import Image\n"
        "from pico.schemas import png; from pico.schemas.images import encode_image, read_parameters\n"
        "image = Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3))\n"
        f"data = encode_image(image, 'png', {PARAMETERS!r}, 1)\n"
        "assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(image))\n"
        "print(json.dumps([png.ENCODER, read_parameters(data)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    encoder, found = json.loads(done.stdout)
    assert encoder == "pillow"
    assert found == {"pico": PARAMETERS, "parameters": a1111_parameters(PARAMETERS["Metadata"])}


@needs_isal
def test_the_fast_writer_is_what_this_install_uses():
    assert png.ENCODER == "isal"


def test_levels_outside_0_to_9_are_refused():
    for level in (-1, 10):
        with pytest.raises(ValueError, match="0 to 9"):
            png.encode_png(smooth_image(), (), level)


def test_jpeg_and_webp_are_unchanged_by_the_png_writer():
    image = smooth_image()
    for fmt, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        assert encode_image(image, fmt, PARAMETERS).startswith(magic)


def test_the_images_of_one_answer_encode_at_once_and_keep_their_order(monkeypatch):
    count = min(3, images.ENCODE_THREADS)
    if count < 2:
        pytest.skip("one CPU: encoding runs on the calling thread")
    all_in = threading.Barrier(count, timeout=60)  # breaks (and the test fails) unless all are in flight together
    real = images.encode_image
    threads = set()

    def meeting(image, fmt, parameters, level):
        threads.add(threading.get_ident())
        all_in.wait()
        return real(image, fmt, parameters, level)

    monkeypatch.setattr(images, "encode_image", meeting)
    sources = [random_image("RGB", seed=n) for n in range(count)]
    params = [{"Metadata": {"Seed": n}} for n in range(count)]
    encoded = encode_images(sources, "png", params, 1)
    assert len(threads) == count and threading.get_ident() not in threads
    for n, data in enumerate(encoded):
        assert read_parameters(data)["pico"] == {"Metadata": {"Seed": n}}
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(sources[n]))


def test_one_image_encodes_on_the_calling_thread(monkeypatch):
    seen = []
    real = images.encode_image
    monkeypatch.setattr(images, "encode_image", lambda *a: seen.append(threading.get_ident()) or real(*a))
    encode_images([smooth_image()], "png", [None], 1)
    assert seen == [threading.get_ident()]


def test_an_encoding_error_reaches_the_caller():
    with pytest.raises(Exception, match="OutputFormat"):
        encode_images([smooth_image(), smooth_image()], "gif", [None, None], 1)
