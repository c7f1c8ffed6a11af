"""The PNG text reader: the same text Pillow finds, wherever it lies, without decoding pixels; bad files are 422."""

from __future__ import annotations

import io
import json
import random
import struct
import time
import tracemalloc
import zlib

import pytest
from PIL import Image, PngImagePlugin

from pico.errors import InvalidRequest
from pico.schemas.images import a1111_parameters, encode_image
from pico.schemas.png_text import MAX_CHUNKS, read_embedded_text, read_png_text
from tests.png_files import SIGNATURE, chunk, huge_png

LIMIT = 2048 * 2048
PARAMETERS = {"Pipeline": "stable-diffusion", "Request": {"Phrase": "ginger cat", "Seed": 7},
              "Metadata": {"Phrase": "ginger cat ☕", "NegativePhrase": "blurry", "Quality": 2, "Scheduler": "Euler a",
                           "GuidanceScale": 5.0, "Seed": 7, "Width": 64, "Height": 64, "Model": "sd15"}}


def pillow_png(**texts: tuple[str, str]) -> bytes:
    """A PNG written by Pillow with text chunks of each kind: name -> (kind, value)."""
    info = PngImagePlugin.PngInfo()
    for key, (kind, value) in texts.items():
        if kind == "tEXt":
            info.add_text(key, value)
        elif kind == "zTXt":
            info.add_text(key, value, zip=True)
        else:
            info.add_itxt(key, value, zip=kind == "iTXt-zip")
    out = io.BytesIO()
    Image.new("RGB", (32, 16), (10, 200, 30)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def itxt(key: str, value: str, compressed: bool = False) -> bytes:
    body = value.encode("utf-8")
    return chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([int(compressed), 0]) + b"en\0" + b"\0"
                 + (zlib.compress(body) if compressed else body))


def test_a_png_pico_wrote_round_trips():
    data = encode_image(Image.new("RGB", (64, 64), (1, 2, 3)), "png", PARAMETERS)
    found = read_png_text(data, LIMIT)
    assert (found.width, found.height) == (64, 64)
    assert json.loads(found.text["pico"]) == PARAMETERS
    assert found.text["parameters"] == a1111_parameters(PARAMETERS["Metadata"])


def test_every_kind_of_text_chunk_reads_as_pillow_reads_it():
    data = pillow_png(plain=("tEXt", "café latin-1"), packed=("zTXt", "x" * 5000), intl=("iTXt", "ginger ☕ cat"),
                      intl_packed=("iTXt-zip", "日本語 " * 300))
    assert read_png_text(data, LIMIT).text == Image.open(io.BytesIO(data)).text


def test_text_after_the_pixels_is_read():
    after = [chunk(b"tEXt", b"parameters\0late text"), chunk(b"zTXt", b"packed\0\0" + zlib.compress(b"z" * 3000)),
             itxt("pico", '{"Seed": 7}', compressed=True)]
    data = huge_png(64, 48, after=after)
    expected = {"parameters": "late text", "packed": "z" * 3000, "pico": '{"Seed": 7}'}
    assert read_png_text(data, LIMIT).text == expected
    assert Image.open(io.BytesIO(data)).text == expected  # Pillow agrees, by decoding the image first


def test_a_huge_png_is_read_without_decoding_its_pixels():
    data = huge_png(after=[chunk(b"tEXt", b"parameters\0found")])  # 12000x12000: 432 MB of pixels
    tracemalloc.start()
    started = time.process_time()
    found = read_png_text(data, 1 << 28)
    seconds = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (found.width, found.height, found.text) == (12000, 12000, {"parameters": "found"})
    assert seconds < 0.1
    assert peak < 1 << 20


def test_a_png_over_max_pixels_is_refused_from_its_header():
    started = time.process_time()
    with pytest.raises(InvalidRequest) as refused:
        read_embedded_text(huge_png(), LIMIT)
    assert time.process_time() - started < 0.05
    assert refused.value.field == "image"
    assert refused.value.message == (
        "image is 12000x12000 (144,000,000 pixels); the limit is 4,194,304 pixels")


@pytest.mark.parametrize("data, message", [
    (b"", "image is not a PNG, JPEG or WebP image"),
    (b"hello", "image is not a PNG, JPEG or WebP image"),
    (b"GIF89a" + bytes(40), "image is not a PNG, JPEG or WebP image"),
    (SIGNATURE, "image is a truncated PNG: it ends before its last chunk"),
    (SIGNATURE + chunk(b"tEXt", b"a\0b"), "image is not a valid PNG: it does not start with its header"),
    (huge_png(8, 8)[:-12], "image is a truncated PNG: it ends before its last chunk"),
    (SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 8, 8, 2, 0, 0, 0)), "image is a PNG of 0x8 pixels"),
], ids=["empty", "text", "gif", "signature", "no-header", "no-end", "zero-size"])
def test_what_is_not_a_readable_image_is_invalid(data, message):
    with pytest.raises(InvalidRequest) as refused:
        read_embedded_text(data, LIMIT)
    assert (refused.value.message, refused.value.field) == (message, "image")


def test_every_truncation_and_every_flipped_byte_is_invalid_or_read():
    data = huge_png(16, 16, before=[chunk(b"tEXt", b"a\0b")], after=[itxt("c", "d", compressed=True)])
    for end in range(len(data)):
        with pytest.raises(InvalidRequest):
            read_embedded_text(data[:end], LIMIT)
    rng = random.Random(11)
    for position in range(len(data)):
        broken = bytearray(data)
        broken[position] ^= 1 << rng.randrange(8)
        try:
            read_embedded_text(bytes(broken), LIMIT)
        except InvalidRequest:
            pass


def test_a_bad_checksum_on_a_text_chunk_is_invalid():
    good = chunk(b"tEXt", b"parameters\0x")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(InvalidRequest, match="its tEXt chunk fails its checksum"):
        read_png_text(huge_png(8, 8, after=[bad]), LIMIT)


def test_a_text_bomb_is_refused_after_a_bounded_amount_of_work():
    bomb = zlib.compress(bytes(256 << 20), 9)  # 256 MB of text in about 250 kB
    data = huge_png(8, 8, after=[chunk(b"zTXt", b"parameters\0\0" + bomb)])
    tracemalloc.start()
    with pytest.raises(InvalidRequest, match="has a text chunk over 1 MB once decompressed"):
        read_png_text(data, LIMIT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20
    many = [chunk(b"zTXt", f"k{i}\0\0".encode() + zlib.compress(bytes(1 << 20))) for i in range(9)]
    with pytest.raises(InvalidRequest, match="carries more than 8 MB of text"):
        read_png_text(huge_png(8, 8, after=many), LIMIT)


def test_a_file_of_endless_chunks_is_refused():
    filler = chunk(b"prVt", b"") * MAX_CHUNKS
    with pytest.raises(InvalidRequest, match="has more than 100,000 PNG chunks"):
        read_png_text(huge_png(8, 8, before=[filler]), LIMIT)


def test_malformed_text_chunks_are_skipped_like_pillow_skips_them():
    odd = [chunk(b"tEXt", b"no separator"), chunk(b"zTXt", b"key\0\x05xx"), chunk(b"iTXt", b"key\0\x01"),
           itxt("ok", "kept")]
    assert read_png_text(huge_png(8, 8, after=odd), LIMIT).text == {"ok": "kept"}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_give_their_exif_user_comment_as_a1111_writes_it(fmt):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + "ginger ☕ cat\nSteps: 2".encode("utf-16-be")  # piexif's form
    out = io.BytesIO()
    Image.new("RGB", (24, 16)).save(out, format=fmt, exif=exif.tobytes())
    found = read_embedded_text(out.getvalue(), LIMIT)
    assert (found.width, found.height, found.text) == (24, 16, {"parameters": "ginger ☕ cat\nSteps: 2"})
    plain = io.BytesIO()
    Image.new("RGB", (24, 16)).save(plain, format=fmt)
    assert read_embedded_text(plain.getvalue(), LIMIT).text == {}


def test_a_jpeg_over_max_pixels_is_refused_from_its_header():
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    frame = data.index(b"\xff\xc0")  # start of frame: precision, then height and width
    data[frame + 5:frame + 9] = struct.pack(">HH", 12000, 12000)
    with pytest.raises(InvalidRequest, match=r"image is 12000x12000 \(144,000,000 pixels\)"):
        read_embedded_text(bytes(data), LIMIT)


def test_corrupt_exif_gives_no_comment_and_no_error():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0ginger cat"
    out = io.BytesIO()
    Image.new("RGB", (24, 16)).save(out, format="JPEG", exif=exif.tobytes())
    good = out.getvalue()
    start = good.index(b"Exif\0\0") + 6
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        broken = bytearray(good)
        for _ in range(3):
            broken[rng.randrange(start, start + 60)] = rng.randrange(256)
        seen.add(tuple(read_embedded_text(bytes(broken), LIMIT).text.values()))
    assert ("ginger cat",) in seen and () in seen
