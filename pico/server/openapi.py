"""The OpenAPI 3.1 document of every route, built from the route table and the schema dataclasses.

Each route is registered with a :class:`RouteDoc` in its Bottle config; the request and
response schemas come from the same dataclasses the server validates with, so the document
cannot drift from the code. ``/docs`` renders it without any CDN.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import bottle

from pico import __version__
from pico.schemas.fields import json_schema

ROUTE_PARAM = re.compile(r"<(\w+)(?::[^>]*)?>")

ERROR_SCHEMAS = {
    "pico": {"type": "object", "required": ["Error"], "properties": {"Error": {
        "type": "object", "required": ["Code", "Message"], "properties": {
            "Code": {"type": "string"}, "Message": {"type": "string"},
            "Field": {"type": "string"}, "Hint": {"type": "string"}}}}},
    "openai": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
    "a1111": {"type": "object", "required": ["error", "detail"], "properties": {
        "error": {"type": "string"}, "detail": {"type": "string"},
        "body": {"type": "string"}, "errors": {"type": "string"}}},
}
ERROR_NAMES = {"pico": "PicoError", "openai": "OpenAIError", "a1111": "A1111Error"}


@dataclass(frozen=True)
class RouteDoc:
    """How a route is described: summary, tag, request and response schemas."""

    summary: str
    tag: str
    request: type | None = None  # a dataclass, sent as JSON
    multipart: type | None = None  # a dataclass, sent as multipart/form-data
    response: type | dict | None = None  # a dataclass, a JSON Schema, or None for no JSON body
    response_type: str = "application/json"
    errors: str = "pico"  # which error shape the route answers with
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of query parameters


def document(app: bottle.Bottle) -> dict[str, Any]:
    """The OpenAPI document of ``app``: every route that has a RouteDoc."""
    refs: set[type] = set()
    paths: dict[str, dict] = {}
    for route in app.routes:
        doc: RouteDoc | None = route.config.get("doc")
        if doc is None:
            continue
        path = ROUTE_PARAM.sub(r"{\1}", route.rule)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, doc, refs)
    schemas = {name: schema for name, schema in
               ((ERROR_NAMES[style], schema) for style, schema in ERROR_SCHEMAS.items())}
    done: set[type] = set()
    while refs - done:
        cls = sorted(refs - done, key=lambda c: c.__name__)[0]
        twin = next((other for other in done if other.__name__ == cls.__name__), None)
        if twin is not None:
            raise ValueError(f"two schema classes are named {cls.__name__}: {twin.__module__} and {cls.__module__}")
        schemas[cls.__name__] = json_schema(cls, refs)
        done.add(cls)
    return {
        "openapi": "3.1.0",
        "info": {"title": "PICO", "version": __version__,
                 "description": "Diffusers image pipelines over HTTP: the PICO API, the OpenAI Images API "
                                "and the AUTOMATIC1111 API, on the same generation slots."},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }


def _operation(route: bottle.Route, doc: RouteDoc, refs: set[type]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": doc.summary, "tags": [doc.tag],
        "operationId": f"{route.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', route.rule).strip('_')}",
    }
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in ROUTE_PARAM.findall(route.rule)]
    parameters += [{"name": name, "in": "query", "required": False, "description": text,
                    "schema": {"type": "string"}} for name, text in doc.query]
    if parameters:
        operation["parameters"] = parameters
    if doc.request is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema(doc.request, refs)}}}
    if doc.multipart is not None:
        operation["requestBody"] = {"required": True, "content": {
            "multipart/form-data": {"schema": _schema(doc.multipart, refs)}}}
    if doc.response is None:
        ok = {"description": "Done"}
    else:
        ok = {"description": "OK", "content": {doc.response_type: {"schema": _schema(doc.response, refs)}}}
    error = {"description": "An error", "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ERROR_NAMES[doc.errors]}"}}}}
    operation["responses"] = {"200": ok, "default": error}
    return operation


def _schema(spec: type | dict, refs: set[type]) -> dict:
    if isinstance(spec, dict):
        return spec
    if dataclasses.is_dataclass(spec):
        refs.add(spec)
        return {"$ref": f"#/components/schemas/{spec.__name__}"}
    raise TypeError(f"not a schema: {spec!r}")


def docs_page() -> str:
    """The /docs page: a self-contained HTML view of /openapi.json."""
    return resources.files("pico.server").joinpath("docs.html").read_text("utf-8")
