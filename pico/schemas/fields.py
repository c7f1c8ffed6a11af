"""Field specs on request dataclasses: one source for validation and for the JSON Schema.

A request dataclass declares each field with :func:`option`, giving its default, its
allowed range or choices and a description. :func:`parse` turns a decoded JSON body into
a validated request (or raises :class:`InvalidRequest` naming the field), and
:func:`json_schema` describes the same class for the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dataclasses_json import config as json_config
from dataclasses_json.stringcase import pascalcase

from pico.errors import InvalidRequest, MalformedRequest

T = TypeVar("T")


@dataclass(frozen=True)
class Spec:
    """What a field accepts, beyond its Python type."""

    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] | None = None
    max_length: int | None = None
    image: str | None = None  # PIL mode ("RGB", "L") of a base64 image field
    file: bool = False  # a multipart file part: documented here, read by the route, not by parse()
    description: str = ""
    example: Any = None


def option(default: Any = None, *, factory: Any = None, **spec: Any) -> Any:
    """A request field with a default (or a ``factory`` for mutable ones) and a :class:`Spec` (range, choices...)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"pico": Spec(**spec)})
    return field(default=default, metadata={"pico": Spec(**spec)})


def internal(factory: Any) -> Any:
    """A field that is neither read from nor written to JSON (filled in by parsing)."""
    return field(default_factory=factory, init=False, repr=False, compare=False,
                 metadata={**json_config(exclude=lambda _: True), "internal": True})


def wire_name(name: str, cls: type | None = None) -> str:
    """The JSON name of a field: PascalCase (``GuidanceScale``) unless ``cls`` keeps Python names."""
    if cls is not None and not is_pascal(cls):
        return name
    return pascalcase(name)


def is_pascal(cls: type) -> bool:
    """True for dataclasses whose JSON names are PascalCase (the PICO API); false for snake_case ones."""
    config = getattr(cls, "dataclass_json_config", None) or {}
    return config.get("letter_case") is not None


def spec_of(f: dataclasses.Field) -> Spec:
    """The spec declared on a dataclass field (an empty one if none)."""
    return f.metadata.get("pico", Spec())


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (cached: resolving them is slow)."""
    return typing.get_type_hints(cls)


@functools.cache
def _wire_names(cls: type) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, wire_name(f.name, cls)) for f in wire_fields(cls))


def to_wire(value: Any) -> Any:
    """A dataclass (and what it holds) as JSON-ready data under its wire names; fast enough for every response."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {wire: to_wire(getattr(value, name)) for name, wire in _wire_names(type(value))}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    return value


@functools.cache
def wire_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that appear in JSON."""
    return [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")]


def image_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that carry a base64 image."""
    return [f for f in wire_fields(cls) if spec_of(f).image]


def describe(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def base_type(annotation: Any) -> tuple[type, bool]:
    """(the type, whether null is allowed) for ``int``, ``str | None`` and the like."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _range_text(s: Spec) -> str:
    return f" between {number_text(s.minimum)} and {number_text(s.maximum)}" if s.minimum is not None else ""


def number_text(value: float | None) -> str:
    """A number as people write it: 5 rather than 5.0."""
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def coerce(key: str, value: Any, annotation: Any, s: Spec, lenient: bool = False) -> Any:
    """Check one JSON value against its field's type and spec; returns the value to store.

    ``lenient``: first convert the value as AUTOMATIC1111's pydantic models do (see :func:`lenient_value`).
    """
    kind, nullable = base_type(annotation)
    if value is None:
        if nullable:
            return None
        raise InvalidRequest(f"{key} must not be null; leave it out to get the default", field=key)
    if lenient:
        value = lenient_value(value, kind)
    if dataclasses.is_dataclass(kind):
        return parse_object(key, value, kind, lenient)
    origin = typing.get_origin(kind)
    if origin is list and dataclasses.is_dataclass(typing.get_args(kind)[0]):
        return _coerce_items(key, value, typing.get_args(kind)[0], s, lenient)[0]
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise InvalidRequest(f"{key} must be an array of {_JSON_TYPES[item]}s, got {describe(value)}", field=key)
        if s.max_length is not None and len(value) > s.max_length:
            raise InvalidRequest(f"{key} has {len(value)} items; the limit is {s.max_length}", field=key)
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidRequest(f"{key} must be an object, got {describe(value)}", field=key)
        return value
    if kind in (list, dict):  # a bare list or dict: any items
        if not isinstance(value, kind):
            raise InvalidRequest(f"{key} must be an {_JSON_TYPES[kind]}, got {describe(value)}", field=key)
        if kind is list and s.max_length is not None and len(value) > s.max_length:
            raise InvalidRequest(f"{key} has {len(value)} items; the limit is {s.max_length}", field=key)
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidRequest(f"{key} must be true or false, got {describe(value)}", field=key)
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{key} must be an integer{_range_text(s)}, got {describe(value)}", field=key)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"{key} must be a number{_range_text(s)}, got {describe(value)}", field=key)
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise InvalidRequest(f"{key} must be a string, got {describe(value)}", field=key)
        if s.max_length is not None and len(value) > s.max_length:
            raise InvalidRequest(
                f"{key} is {len(value)} characters long; the limit is {s.max_length}", field=key
            )
        if s.choices is not None:
            for choice in s.choices:
                if choice.lower() == value.strip().lower():
                    return choice
            raise InvalidRequest(
                f"{key} must be one of {', '.join(repr(c) for c in s.choices)}, got {describe(value)}", field=key
            )
        return value
    if s.minimum is not None and (value < s.minimum or value > s.maximum):
        raise InvalidRequest(f"{key} must be{_range_text(s)}, got {number_text(value)}", field=key)
    if s.multiple_of and value % s.multiple_of:
        raise InvalidRequest(f"{key} must be a multiple of {s.multiple_of}, got {value}", field=key)
    return value


def parse(cls: type[T], body: Any, lenient: bool = False) -> T:
    """Validate a decoded JSON body against request class ``cls``.

    Raises MalformedRequest when the body is not an object, InvalidRequest naming the
    first field that is missing, of the wrong type or out of range. Unknown keys are
    kept in the request's ``ignored_fields`` so a misspelt field is visible. Fields that
    are lists of dataclasses (``Loras``) are parsed item by item; an error names the item's
    field as ``Loras[1].Weight``; a nested object (``Hires``) names ``Hires.Scale``.

    ``lenient`` (the AUTOMATIC1111 API only; PICO's own API is strict by contract): values are
    converted as A1111's pydantic models convert them, and null means the field's default.
    """
    if not isinstance(body, dict):
        raise MalformedRequest(f"The request body must be a JSON object, got {describe(body)}")
    request, ignored = _parse_object(cls, body, "", lenient)
    if "ignored_fields" in {f.name for f in dataclasses.fields(cls)}:
        request.ignored_fields = sorted(ignored)
    return request


def _parse_object(cls: type[T], body: dict, prefix: str, lenient: bool = False) -> tuple[T, list[str]]:
    """(the dataclass ``cls`` made from ``body``, the unknown keys) with error fields under ``prefix``."""
    if lenient:
        body = {key: value for key, value in body.items() if value is not None}
    hints = type_hints(cls)
    values: dict[str, Any] = {}
    known = set()
    ignored: list[str] = []
    for f in wire_fields(cls):
        key = wire_name(f.name, cls)
        known.add(key)
        s = spec_of(f)
        if s.file:
            continue
        name = prefix + key
        if key not in body:
            if s.required:
                raise InvalidRequest(f"{name} is required", field=name, hint=_did_you_mean(key, body))
            continue
        value = body[key]
        if typing.get_origin(base_type(hints[f.name])[0]) is list and _items_are_dataclasses(hints[f.name]):
            values[f.name], nested_ignored = _coerce_items(name, value, _item_type(hints[f.name]), s, lenient)
            ignored += nested_ignored
        else:
            values[f.name] = coerce(name, value, hints[f.name], s, lenient)
        if s.required and values[f.name] in (None, ""):
            raise InvalidRequest(f"{name} is required and must not be empty", field=name)
    ignored += [prefix + str(k) for k in body if k not in known]
    for field_name, value in values.items():  # a nested object's unknown keys, as Parent.Key
        ignored += [f"{prefix}{wire_name(field_name, cls)}.{k}" for k in getattr(value, "ignored_fields", None) or ()]
    return cls(**values), ignored


def _item_type(annotation: Any) -> type:
    return typing.get_args(base_type(annotation)[0])[0]


def _items_are_dataclasses(annotation: Any) -> bool:
    return dataclasses.is_dataclass(_item_type(annotation))


def _coerce_items(key: str, value: Any, item: type, s: Spec, lenient: bool = False) -> tuple[list, list[str]]:
    """A JSON array of objects as a list of dataclass ``item`` and their unknown keys; errors name ``key[i].Field``."""
    if not isinstance(value, list):
        raise InvalidRequest(f"{key} must be an array of objects, got {describe(value)}", field=key)
    if s.max_length is not None and len(value) > s.max_length:
        raise InvalidRequest(f"{key} has {len(value)} items; the limit is {s.max_length}", field=key)
    items, ignored = [], []
    for index, entry in enumerate(value):
        name = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise InvalidRequest(f"{name} must be an object, got {describe(entry)}", field=name)
        parsed, unknown = _parse_object(item, entry, name + ".", lenient)
        items.append(parsed)
        ignored += unknown
    return items, ignored


def parse_object(key: str, value: Any, cls: type, lenient: bool = False) -> Any:
    """A nested JSON object (one dataclass field, e.g. Hires) parsed as ``cls``; errors name ``Key.Field``."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{key} must be an object, got {describe(value)}", field=key)
    try:
        return parse(cls, value, lenient)
    except InvalidRequest as exc:
        inner = exc.field
        exc.field = f"{key}.{inner}" if inner else key
        if inner and exc.message.startswith(inner):
            exc.message = exc.field + exc.message[len(inner):]
        raise


# pydantic 1 (AUTOMATIC1111 1.x runs on FastAPI 0.94): the strings its bool validator reads.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def lenient_value(value: Any, kind: Any) -> Any:
    """``value`` converted to ``kind`` as pydantic 1 converts it, or unchanged for the strict check to refuse.

    bool from 0/1 and "true"/"false"/"yes"/"on"/...; int from a bool, a number (truncated toward
    zero, as int() does) or a numeric string; float from a bool, an int or a numeric string;
    str from a number. Ranges are still checked afterwards.
    """
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return value
    elif kind is float:
        if isinstance(value, (bool, int)):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value
            return number if math.isfinite(number) else value
    elif kind is str:
        if isinstance(value, (int, float)):  # pydantic 1 writes numbers (and bools, as ints) as text
            return str(value)
    elif typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, list) and item in (bool, int, float, str):
            return [lenient_value(v, item) for v in value]
    return value


def _did_you_mean(key: str, body: dict) -> str | None:
    close = difflib.get_close_matches(key.lower(), [str(k).lower() for k in body], n=1, cutoff=0.75)
    if not close:
        return None
    original = next(k for k in body if str(k).lower() == close[0])
    return f"The body has {original!r}; field names are case-sensitive: use {key!r}"


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def type_schema(kind: Any, refs: set[type] | None = None) -> dict[str, Any]:
    """JSON Schema of a field type: scalars, list[X], dict[str, X], dataclasses (as $ref, added to ``refs``)."""
    origin = typing.get_origin(kind)
    if origin is list:
        return {"type": "array", "items": type_schema(typing.get_args(kind)[0], refs)}
    if origin is dict:
        return {"type": "object"}
    if kind is typing.Any:
        return {}
    if dataclasses.is_dataclass(kind):
        if refs is not None:
            refs.add(kind)
        return {"$ref": f"#/components/schemas/{kind.__name__}"}
    return {"type": _JSON_TYPES[kind]}


def json_schema(cls: type, refs: set[type] | None = None) -> dict:
    """A JSON Schema (OpenAPI 3.1 dialect) of dataclass ``cls``, from the same specs parse() checks.

    Nested dataclasses become $refs, collected in ``refs``.
    """
    hints = type_hints(cls)
    properties: dict[str, dict] = {}
    required = []
    for f in wire_fields(cls):
        key = wire_name(f.name, cls)
        s = spec_of(f)
        kind, nullable = base_type(hints[f.name])
        prop = type_schema(kind, refs)
        if nullable:
            prop = {"anyOf": [prop, {"type": "null"}]} if "$ref" in prop else {**prop, "type": [prop["type"], "null"]}
        if s.description:
            prop["description"] = s.description
        if s.minimum is not None:
            prop["minimum"], prop["maximum"] = s.minimum, s.maximum
        if s.multiple_of:
            prop["multipleOf"] = s.multiple_of
        if s.choices is not None:
            prop["enum"] = list(s.choices) + ([None] if nullable else [])
        if s.max_length is not None:
            prop["maxItems" if prop.get("type") == "array" else "maxLength"] = s.max_length
        if s.image:
            prop["contentEncoding"] = "base64"
            prop["contentMediaType"] = "image/*"
        if s.file:
            prop["contentMediaType"] = "application/octet-stream"
        if s.required or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            required.append(key)
        elif f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        if s.example is not None:
            prop["examples"] = [s.example]
        properties[key] = prop
    schema = {"type": "object", "title": cls.__name__, "properties": properties, "additionalProperties": True}
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        schema["required"] = required
    return schema
