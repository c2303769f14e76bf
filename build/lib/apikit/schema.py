"""Every operation in the OpenAPI schema lists the errors it can answer with, in the one
error shape: clients generate code from the schema, so it must say so."""

from __future__ import annotations

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
