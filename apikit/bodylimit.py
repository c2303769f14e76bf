"""Request bodies over their route's limit are refused before they are read.

Django's ASGI handler reads the whole body (into memory, then a temporary file) before
any view or middleware runs, so a size check in a view comes after the damage: a client
declaring ``Content-Length: 10**12`` would be waited for, and a 600 MB POST to any URL
would be stored first. This ASGI middleware sits in front of Django: a declared length
over the limit gets 413 at once, and a body that streams past it (chunked, or lying
about its length) is cut off at the limit with the same answer.

The limits come from settings (``BODY_LIMITS`` per path or path pattern,
``MAX_REQUEST_BYTES`` for the rest). The server must pass the body on as it arrives
(uvicorn does; daphne buffers it first, so behind daphne only the declared length is
checked before reading — and a proxy in front should cap bodies anyway, see the
deployment notes).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from django.conf import settings

ASGIApp = Callable[..., Awaitable[None]]


DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


def limit_for(path: str) -> int:
    """The path's own limit (a key of ``BODY_LIMITS``; ``*`` in a key stands for one
    segment, e.g. ``/api/batches/*/jobs/``), else ``MAX_REQUEST_BYTES``."""
    limits = getattr(settings, "BODY_LIMITS", {})
    if path in limits:
        return limits[path]
    for pattern, limit in limits.items():
        if "*" in pattern and _matches(pattern, path):
            return limit
    return getattr(settings, "MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)


def _matches(pattern: str, path: str) -> bool:
    wanted, segments = pattern.split("/"), path.split("/")
    return len(wanted) == len(segments) and all(
        want == segment or (want == "*" and segment) for want, segment in zip(wanted, segments, strict=True)
    )


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value)  # ValueError: answered as a bad request
    return None


def _answer(status: int, code: str, message: str, hint: str) -> tuple[dict, dict]:
    body = json.dumps({"error": {"code": code, "message": message, "hint": hint}}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _too_large(limit: int) -> tuple[dict, dict]:
    return _answer(
        413,
        "too_large",
        f"The request body is larger than the {limit:,} bytes this endpoint takes.",
        "Send less: split a bulk submit, or keep payloads small and pass references to big data.",
    )


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope.get("path", ""))
        try:
            declared = _declared_length(scope)
        except ValueError:
            return await _send_all(send, _answer(400, "bad_request", "Content-Length is not a number.", ""))
        if declared is not None and declared > limit:
            return await _send_all(send, _too_large(limit))
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope, receive, send, limit: int) -> None:
        received = 0
        refused = False

        async def counting_receive() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _send_all(send, _too_large(limit))
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _send_all(send, messages: tuple[dict, dict]) -> None:
    for message in messages:
        await send(message)
