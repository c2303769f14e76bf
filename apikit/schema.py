"""The OpenAPI schema's conventions: every operation is described by its own docstrings
(``EndpointSchema``), and lists the errors it can answer with, in the one error shape
(``add_error_responses``): clients generate code from the schema, so it must say so."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc


class EndpointSchema(AutoSchema):
    """An operation's description is the docstring of its action as the view class itself
    defines it, else the view class's own: never a mixin's or a base class's, which
    document code, not the endpoint (drf-spectacular walks the bases for one, and
    /api/docs/ showed a tracing mixin's docstring for "submit a job"). An operation whose
    view inherits it is described with ``extend_schema_view``."""

    def get_description(self) -> str:  # type: ignore[override]  # as drf-spectacular declares it
        view_class = type(self.view)
        action = getattr(self.view, "action", None) or self.method.lower()
        return _own_doc(view_class.__dict__.get(action)) or _own_doc(view_class)


def _own_doc(obj) -> str:
    """The object's own docstring as drf-spectacular cleans it up; "" when it has none
    (``get_doc`` would look in the bases then)."""
    return get_doc(obj) if getattr(obj, "__doc__", None) else ""


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "hint"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string"},
                "hint": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        }
    },
}
_COMMON = {
    "400": "invalid input: see error.fields",
    "401": "not logged in: send a token",
    "403": "not allowed for this user",
    "404": "no such object, or not yours",
    "405": "method not allowed",
    "429": "too many requests: see Retry-After",
    "500": "unexpected error: quote the request id in error.hint",
    "503": "the database or Redis is unreachable: see Retry-After",
}
_WITH_BODY = {"post", "put", "patch"}
_PUBLIC = {"/api/health/", "/api/health/live/"}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status, description in _COMMON.items():
                if path in _PUBLIC and status in ("401", "403"):
                    continue
                responses.setdefault(status, {"description": description})
            if method in _WITH_BODY:
                responses.setdefault("413", {"description": "the request body is too large"})
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response["content"] = reference
    return result
