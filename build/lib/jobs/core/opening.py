"""When may a heavy job start? The next opening of the enabled work windows, by
``workwindow``'s policy (the time math lives there; this is the jobs side of it)."""

from __future__ import annotations

import logging
from datetime import datetime

from workwindow.models import enabled_windows
from workwindow.policy import Window, is_open, next_open

logger = logging.getLogger("jobs.core.window")


def current() -> list[Window]:
    return enabled_windows()


def deferral_until(at: datetime, windows: list[Window]) -> datetime | None:
    """When a heavy job wanting to start at ``at`` may start, or None for "at ``at``".
    A window set that never opens (within a week) does not hold work back forever."""
    if is_open(windows, at):
        return None
    opening = next_open(windows, at)
    if opening is None:
        logger.warning("no work window opens within a week: heavy jobs run without waiting")
    return opening
