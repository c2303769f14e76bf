"""API tokens kept out of the web server's log lines.

A WebSocket client may send its token as ``?token=<key>`` (a browser's WebSocket cannot
set headers), and uvicorn logs each WebSocket's path with its query string — ``"WebSocket
/ws/jobs/…/?token=…" [accepted]`` — even with its access log off: anyone who can read
the log could act as that user. ``redact_server_logs`` (config.asgi) blanks them.
"""

from __future__ import annotations

import logging
import re

# The web server's loggers whose lines carry request paths (uvicorn's).
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")
_TOKEN_IN_QUERY = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+", re.IGNORECASE)


def redacted(text: str) -> str:
    """``text`` with every ``token=`` query value replaced by ``[redacted]``."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


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
