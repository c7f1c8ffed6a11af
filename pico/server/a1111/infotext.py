"""A1111's png-info: the infotext a PNG carries, and that text parsed into fields as A1111 parses it.

The parser follows ``parse_generation_parameters`` in A1111's ``modules/infotext_utils.py``:
prompt lines, then ``Negative prompt:`` lines, then a last line of ``Key: value`` pairs;
sizes (``64x64``) split into ``Key-1``/``Key-2``; values stay strings; missing keys get A1111's defaults.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pico.schemas.images import A1111_CHUNK, PICO_CHUNK, decode_base64
from pico.schemas.png_text import read_embedded_text
from pico.server.a1111.schemas import PngInfoResponse

PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE = "Negative prompt:"
# What A1111 fills in for keys an infotext lacks.
DEFAULTS: dict[str, Any] = {
    "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
    "Hires checkpoint": "Use same checkpoint", "Hires prompt": "", "Hires negative prompt": "",
    "Mask mode": "Inpaint masked", "Masked content": "original", "Inpaint area": "Whole picture",
    "Masked area padding": 32, "RNG": "GPU", "Schedule type": "Automatic", "Schedule max sigma": 0,
    "Schedule min sigma": 0, "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
}


def png_info(image: str, max_pixels: int) -> PngInfoResponse:
    """The infotext of a base64 image, its other PICO text (the request as JSON), and the parsed fields.

    Only the file's text is read, never its pixels; images over ``max_pixels`` are refused.
    """
    text = read_embedded_text(decode_base64(image, "image"), max_pixels, "image").text
    info = text.get(A1111_CHUNK) or ""
    pico = _json_or_none(text.get(PICO_CHUNK))
    items = {"pico": json.dumps(pico, ensure_ascii=False)} if pico else {}
    return PngInfoResponse(info=info, items=items, parameters=parse_infotext(info))


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def parse_infotext(text: str) -> dict[str, Any]:
    """An A1111 infotext as a dict: Prompt, Negative prompt, then each ``Key: value`` of its last line."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE):
            in_negative, line = True, line[len(NEGATIVE):].strip()
        if in_negative:
            negative += ("\n" if negative else "") + line
        else:
            prompt += ("\n" if prompt else "") + line
    fields: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in PARAM.findall(last):
        if not value:
            continue
        if len(value) > 1 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        size = IMAGE_SIZE.match(value)
        if size:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.groups()
        else:
            fields[key] = value
    return {**fields, **{key: value for key, value in DEFAULTS.items() if key not in fields}}
