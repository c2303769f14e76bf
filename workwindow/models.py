"""Work windows: when heavy jobs may run. Edited by operators in the admin."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, available_timezones

from django.core.exceptions import ValidationError
from django.db import models

from workwindow.policy import Window

WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@functools.cache
def known_zones() -> frozenset[str]:
    """The IANA zones this server lists: the ones windows, schedules and the console
    accept — but the names that are no place: ``localtime`` (Debian's tzdata lists it:
    the host's own zone, whatever that is where the code runs), ``posixrules`` and
    ``Factory``."""
    return frozenset(available_timezones()) - _NO_PLACE


_NO_PLACE = frozenset({"localtime", "posixrules", "Factory"})


def validate_time_zone(name: str) -> None:
    # Membership, not ZoneInfo(name): names like "America" (a directory) raise OSError.
    if name not in known_zones():
        raise ValidationError(f"Unknown time zone {name!r}; use an IANA name such as Europe/Kyiv.")


def validate_weekdays(days) -> None:
    def is_day(d) -> bool:
        return isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6

    if not isinstance(days, list) or not days or not all(is_day(d) for d in days):
        raise ValidationError("weekdays must be a non-empty list of numbers 0 (Monday) to 6 (Sunday).")
    if len(set(days)) != len(days):
        raise ValidationError("weekdays names a day twice: list each day once.")


def all_days() -> list[int]:
    return list(range(7))


class WorkWindow(models.Model):
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    start_time = models.TimeField(help_text="opens at this local time")
    end_time = models.TimeField(help_text="closes at this local time; the next day when not after the start")
    weekdays = models.JSONField(default=all_days, validators=[validate_weekdays], help_text="0 = Monday … 6 = Sunday")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        days = ",".join(WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        return f"{self.name}: {self.start_time:%H:%M}–{self.end_time:%H:%M} {self.time_zone} ({days})"

    def as_policy(self) -> Window:
        return Window(ZoneInfo(self.time_zone), self.start_time, self.end_time, frozenset(self.weekdays))


def enabled_windows() -> list[Window]:
    """The windows in force: their union gates heavy jobs; none means no gate."""
    return [w.as_policy() for w in WorkWindow.objects.filter(enabled=True).order_by("pk")]
