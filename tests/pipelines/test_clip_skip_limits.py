"""ClipSkip past the text encoder's layers is a 422 naming ClipSkip, not an IndexError (the fuzz test's find)."""

from __future__ import annotations

import pytest

from pico.errors import InvalidRequest
from pico.schemas.requests import StableDiffusionRequest, StableDiffusionXlRequest


@pytest.mark.parametrize("cls, fits, too_far", [(StableDiffusionRequest, 3, 4), (StableDiffusionXlRequest, 2, 3)])
@pytest.mark.parametrize("syntax", ["a1111", "literal"])
def test_clip_skip_is_refused_past_the_encoders_layers(engine, cls, fits, too_far, syntax):
    body = {"Phrase": "cat", "Steps": 1, "Seed": 1, "PromptSyntax": syntax}
    assert engine.generate(cls.parse({**body, "ClipSkip": fits}, 2048 * 2048)).images  # the tiny encoders: 2 layers
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(cls.parse({**body, "ClipSkip": too_far}, 2048 * 2048))
    assert caught.value.field == "ClipSkip"
    assert caught.value.message == "ClipSkip goes back further than this model's text encoder has layers (2)"
