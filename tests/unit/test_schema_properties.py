"""Property-based tests of request parsing: any JSON gives a request or a typed error, never a crash."""

from __future__ import annotations

import dataclasses
import typing

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pico.errors import InvalidRequest, MalformedRequest
from pico.catalog.pipelines import PIPELINES
from pico.schemas import fields
from pico.schemas.requests import StableDiffusionRequest, StableDiffusionXlRequest

MAX_PIXELS = 2048 * 2048
REQUEST_TYPES = [pipeline.request_type for pipeline in PIPELINES]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def field_names(cls) -> list[str]:
    return [fields.wire_name(f.name) for f in fields.wire_fields(cls)]


@st.composite
def bodies(draw, cls):
    """Objects whose keys are mostly the request's own fields, with values of any JSON type."""
    keys = st.sampled_from(field_names(cls)) | st.text(max_size=12)
    return draw(st.dictionaries(keys, json_values, max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_gives_a_request_or_a_typed_error(data):
    cls = data.draw(st.sampled_from(REQUEST_TYPES))
    body = data.draw(bodies(cls) | json_values)
    try:
        request = cls.parse(body, MAX_PIXELS)
    except (InvalidRequest, MalformedRequest) as error:
        assert error.message and error.status in (400, 422)
        if isinstance(error, InvalidRequest):
            assert error.field is not None
        return
    assert isinstance(body, dict)
    assert 1 <= request.step_count() <= 250
    assert {k for k in request.ignored_fields if "[" not in k} == set(body) - set(field_names(cls))


@st.composite
def valid_values(draw, f: dataclasses.Field, annotation):
    """A value inside the field's spec (Width/Height, which go in pairs, are left out by the caller)."""
    spec = fields.spec_of(f)
    kind = [a for a in typing.get_args(annotation) if a is not type(None)][0] \
        if typing.get_args(annotation) and typing.get_origin(annotation) is not list else annotation
    if spec.choices:
        return draw(st.sampled_from(spec.choices))
    if kind is bool:
        return draw(st.booleans())
    if kind is int:
        return draw(st.integers(int(spec.minimum), int(spec.maximum)))
    if kind is float:
        return draw(st.floats(spec.minimum, spec.maximum, allow_nan=False))
    if dataclasses.is_dataclass(kind):  # a nested object (Hires): left out, or its defaults
        return draw(st.sampled_from([None, {}]))
    if typing.get_origin(kind) is list:  # Loras: items of a nested dataclass
        return draw(st.lists(st.fixed_dictionaries({
            "Name": st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True),
            "Weight": st.floats(-4, 4, allow_nan=False)}), max_size=3, unique_by=lambda item: item["Name"]))
    return draw(st.text(min_size=1, max_size=30))


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_values_inside_the_specs_are_accepted_as_given(data):
    cls = data.draw(st.sampled_from([StableDiffusionRequest, StableDiffusionXlRequest]))
    hints = typing.get_type_hints(cls)
    chosen = data.draw(st.lists(st.sampled_from(
        [f for f in fields.wire_fields(cls) if f.name not in ("model", "width", "height", "vae_type", "refiner")]),
        unique=True, max_size=6))
    body = {"Phrase": "ginger cat"}
    for f in chosen:
        body[fields.wire_name(f.name)] = data.draw(valid_values(f, hints[f.name]))
    try:
        request = cls.parse(body, MAX_PIXELS)
    except InvalidRequest as refused:
        # The one rule across fields: the LCM sampler runs at most 50 steps (Steps, or 250 x Quality).
        assume(not (str(body.get("Scheduler", "")).startswith("LCM") and "at most" in refused.message))
        raise
    for key, value in body.items():
        python_name = next(f.name for f in fields.wire_fields(cls) if fields.wire_name(f.name) == key)
        parsed = getattr(request, python_name)
        if key == "Loras":
            assert [(lora.name, lora.weight) for lora in parsed] == [(i["Name"], i["Weight"]) for i in value]
            continue
        assert (fields.to_wire(parsed) == {**fields.to_wire(type(parsed)()), **value}) if isinstance(value, dict) \
            else parsed == value, key
    assert request.ignored_fields == []
