"""One error shape for the whole API:
``{"error": {"code": ..., "message": ..., "hint": ..., "fields": {...}}}``.

An app's own exceptions join in without this module knowing them: one that carries an
``http_status`` (and a ``code``, and optionally ``hint`` and ``field``) is answered
with them — ``jobs``' submit errors (400/413), refused actions (409) and unknown jobs
(404) work that way.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("apikit")

_HINTS = {
    "not_authenticated": "Send 'Authorization: Token <key>' or log in at /admin/.",
    "authentication_failed": "Check the token; staff can issue one in the admin under Tokens.",
    "permission_denied": "This needs other permissions; ask an operator.",
    "not_found": "Check the id (or page number); you only see your own objects.",
    "method_not_allowed": "See /api/docs/ for the methods this endpoint accepts.",
    "parse_error": "Send valid JSON with 'Content-Type: application/json'.",
    "unsupported_media_type": "Send JSON with 'Content-Type: application/json' (uploads: multipart/form-data).",
    "throttled": "Slow down and retry after the number of seconds in Retry-After.",
    "invalid": "Fix the fields listed under 'fields' and send again.",
    "conflict": "Reload the job to see its current status.",
}


class Refusal(exceptions.APIException):
    """A refusal with its own status, code, message and hint, and a Retry-After (in
    seconds) when waiting helps: what apps raise for their own 4xx/5xx answers."""

    def __init__(self, status_code: int, code: str, message: str, hint: str = "", retry_after: int | None = None):
        self.status_code, self.default_code, self.hint = status_code, code, hint
        self.wait = retry_after  # DRF's handler turns this into the Retry-After header
        super().__init__(detail=message, code=code)


def error_body(code: str, message: str, *, hint: str = "", fields: dict | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "hint": hint or _HINTS.get(code, "")}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _flatten(detail) -> dict:
    """A validation error's messages by the path of the field they are about: an item of
    a list of objects is named as the submit names it (``jobs[3].priority``), so a bulk's
    refusals have one shape whichever check made them."""
    fields: dict[str, list[str]] = {}
    _gather(detail, "", fields)
    return fields


def _gather(detail, path: str, fields: dict[str, list[str]]) -> None:
    if isinstance(detail, list) and any(isinstance(item, dict) for item in detail):
        detail = dict(enumerate(detail))  # a list serializer's errors in DRF's older shape: {} per valid item
    if isinstance(detail, dict) and not _positions_of_a_list_field(detail):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY and path:
                child = path  # about the object (or list) itself: "Expected a dictionary", "may not be empty"
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            _gather(value, child, fields)
        return
    fields.setdefault(path or api_settings.NON_FIELD_ERRORS_KEY, []).extend(_messages(detail))


def _positions_of_a_list_field(detail: dict) -> bool:
    """A list of values' errors (``{0: ["Must be a valid UUID."]}``) stay under the list's
    own name, each message led by its position: ``depends_on`` is what clients look for."""
    return bool(detail) and all(isinstance(k, int) and not isinstance(v, dict) for k, v in detail.items())


def _messages(value) -> list:
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(_messages(item) if isinstance(item, (list, dict)) else [str(item)])
        return out
    if isinstance(value, dict):
        return [f"{k}: {'; '.join(_messages(v))}" for k, v in value.items()]
    return [str(value)]


# Seconds a client is told to wait when a part of the system is down.
OUTAGE_RETRY_AFTER = 5


def _outage(part: str) -> Response:
    body = error_body(
        "unavailable",
        f"{part} is unreachable right now; nothing was changed.",
        hint=f"Retry after {OUTAGE_RETRY_AFTER} seconds; /api/health/ says which part is down.",
    )
    return Response(body, status=503, headers={"Retry-After": str(OUTAGE_RETRY_AFTER)})


def _refused_request(exc) -> Response | None:
    """Django's own refusals of a request's body: the client's doing, never a 500."""
    if isinstance(exc, RequestDataTooBig):
        body = error_body("too_large", "The request body is larger than this endpoint takes.",
                          hint="Send less: split a bulk submit, or keep payloads small.")  # fmt: skip
        return Response(body, status=413)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response(error_body("invalid", str(exc) or "Too many fields or files in one request."), status=400)
    if isinstance(exc, MultiPartParserError):
        hint = "Send a well-formed multipart/form-data body (let your HTTP client build it)."
        body = error_body("parse_error", f"The multipart body cannot be read: {exc}", hint=hint)
        return Response(body, status=400)
    return None


def _declared(exc) -> Response:
    """An exception that says how to answer it (see the module's docstring)."""
    message = getattr(exc, "message", None) or str(exc)
    field = getattr(exc, "field", None)
    body = error_body(getattr(exc, "code", "error"), message, hint=getattr(exc, "hint", ""),
                      fields={field: [message]} if field else None)  # fmt: skip
    return Response(body, status=exc.http_status)


def exception_handler(exc, context):
    refused = _refused_request(exc)
    if refused is not None:
        return refused
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unreachable: %s", exc)
        return _outage("The database")
    if isinstance(exc, RedisError):
        logger.warning("redis unreachable: %s", exc)
        return _outage("Redis")
    if isinstance(getattr(exc, "http_status", None), int):
        return _declared(exc)
    if isinstance(exc, DataError):
        # The database refused a value the validators let through (e.g. a UTC offset of
        # +18:41, or a year PostgreSQL cannot store): the client's input, not our fault.
        logger.info("database refused a value: %s", exc)
        return Response(
            error_body(
                "invalid",
                "A value is outside what can be stored (a date, time-zone offset or number out of range).",
                hint="Use dates with UTC offsets within ±15:59 and numbers of ordinary size.",
            ),
            status=400,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        request_id = uuid.uuid4().hex[:12]
        logger.exception("unhandled API error", extra={"request_id": request_id})
        return Response(
            error_body(
                "server_error",
                "Unexpected server error.",
                hint=f"Quote request id {request_id} when you report it.",
            ),
            status=500,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", "The request has invalid fields.", fields=_flatten(exc.detail))
    else:
        code = getattr(exc, "default_code", "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, str(detail), hint=getattr(exc, "hint", ""))
    return response


@csrf_exempt  # a POST to an unknown API path is a 404 in JSON, not a CSRF page
def not_found_view(request, exception=None):
    """Django's 404 for URLs no route matches: JSON under /api/, the usual page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        body = error_body("not_found", f"No endpoint at {request.path}.", hint="See /api/docs/ for the endpoints.")
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)


def bad_request_view(request, exception=None):
    """Django's 400 for a request refused before any view (a Host not in ALLOWED_HOSTS, a
    malformed cookie or header): JSON under /api/, the usual page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import bad_request

    if request.path.startswith("/api/"):
        body = error_body(
            "bad_request", "The request was refused before reaching an endpoint.",
            hint="Check the request's headers: its Host must be one of the server's (ALLOWED_HOSTS).",
        )  # fmt: skip
        return JsonResponse(body, status=400)
    return bad_request(request, exception)


class RefusedHostAsJson:
    """A Host not in ALLOWED_HOSTS under /api/: the JSON 400 (``bad_request_view``) with
    DEBUG on too, where Django answers it with its technical page — the exception's
    traceback, as HTML, to an API client. First in the middleware: the others ask for
    the host."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            from django.core.exceptions import DisallowedHost

            try:
                request.get_host()
            except DisallowedHost:
                return bad_request_view(request)
        return self.get_response(request)
