"""API tokens kept out of the web server's log lines.

A WebSocket client may send its token as ``?token=<key>`` (a browser's WebSocket cannot
set headers), and uvicorn logs each WebSocket's path with its query string — ``"WebSocket
/ws/jobs/…/?token=…" [accepted]`` — even with its access log off: anyone who can read
the log could act as that user. ``redact_server_logs`` (config.asgi) blanks them.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# The web server's loggers whose lines carry request paths (uvicorn's).
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")
# A query parameter: its name and its value (up to the next parameter, space or quote).
_PARAMETER = re.compile(r"([?&;])([^=&;?\s\"']*)=([^&;\s\"']*)")
_SECRET_NAMES = {"token", "access_token"}


def redacted(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by
    ``[redacted]`` — its name read as the server reads it (``%74oken`` is ``token``)."""
    if "=" not in text:
        return text
    return _PARAMETER.sub(_blank_secret, text)


def _blank_secret(match: re.Match) -> str:
    separator, name, _value = match.groups()
    if unquote_plus(name).strip().lower() in _SECRET_NAMES:
        return f"{separator}{name}=[redacted]"
    return match.group(0)


class RedactTokens(logging.Filter):
    """Blanks query-string tokens in a record's message and its string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redacted(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def redact_server_logs() -> None:
    """Filter the web server's loggers (once per process)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(known, RedactTokens) for known in logger.filters):
            logger.addFilter(RedactTokens())
