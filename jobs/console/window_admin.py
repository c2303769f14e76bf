"""The work windows in the console. The policy (``workwindow``) imports no other app; its
page lives here, with the console's guard against odd list lookups (a NUL in a filter
reached PostgreSQL: a 500)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html_join

from jobs.console.input_checks import InputChecked
from workwindow import policy
from workwindow.models import WEEKDAY_NAMES, WorkWindow, known_zones

PREVIEW_OPENINGS = 5
PREVIEW_WEEKS = timedelta(weeks=PREVIEW_OPENINGS + 1)
DAY_CHOICES = [(str(number), name) for number, name in enumerate(WEEKDAY_NAMES)]


def zone_choices() -> list[tuple[str, str]]:
    """Every IANA zone the server knows (zoneinfo.available_timezones()), UTC first."""
    names = sorted(known_zones() - {"UTC"})
    return [("UTC", "UTC"), *((name, name) for name in names)]


class WorkWindowForm(forms.ModelForm):
    """Weekdays as Mon..Sun checkboxes (stored as the 0–6 list the policy reads) and the
    zone as a select of IANA names: nothing to type wrong; what is wrong is said at the field."""

    weekdays = forms.TypedMultipleChoiceField(
        choices=DAY_CHOICES, coerce=int, widget=forms.CheckboxSelectMultiple, label="weekdays",
        help_text="the days on which the window opens (local to its time zone)",
        error_messages={"required": "Tick at least one day."},
    )  # fmt: skip
    time_zone = forms.ChoiceField(choices=zone_choices, initial="UTC", help_text="an IANA zone, e.g. Europe/Kyiv")

    class Meta:
        model = WorkWindow
        fields = ["name", "enabled", "time_zone", "start_time", "end_time", "weekdays"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:  # the stored list, as ticked boxes
            self.initial["weekdays"] = [str(day) for day in self.instance.weekdays]
        elif "weekdays" not in self.initial:
            self.initial["weekdays"] = [str(day) for day in range(7)]

    def clean_weekdays(self) -> list[int]:
        return sorted(set(self.cleaned_data["weekdays"]))


@admin.register(WorkWindow)
class WorkWindowAdmin(InputChecked, admin.ModelAdmin):
    form = WorkWindowForm
    list_display = ["name", "enabled", "time_zone", "start_time", "end_time", "days", "next_openings"]
    list_filter = ["enabled", "time_zone"]
    readonly_fields = ["next_openings"]

    @admin.display(description="weekdays")
    def days(self, window: WorkWindow) -> str:
        return ", ".join(WEEKDAY_NAMES[day] for day in sorted(window.weekdays))

    @admin.display(description=f"next {PREVIEW_OPENINGS} openings")
    def next_openings(self, window: WorkWindow) -> str:
        if window.pk is None:
            return "—"
        now = timezone.now()
        # Openings within PREVIEW_WEEKS (a weekly window's five), read over a week more
        # (policy.HORIZON) so that the last one's close is its own, not the read's end.
        until = now + PREVIEW_WEEKS
        periods = policy.open_periods([window.as_policy()], now, until + policy.HORIZON)
        upcoming = [(o, c) for o, c in periods if c > now and o < until][:PREVIEW_OPENINGS]
        zone = window.as_policy().zone

        def closing(closes) -> str:
            if closes >= until + policy.HORIZON:
                return f"open past {closes.astimezone(zone):%a %Y-%m-%d}"
            return f"{closes.astimezone(zone):%a %Y-%m-%d %H:%M %Z}"

        def opening(opens) -> str:
            # A period open now may have opened before what was read (a day back): "now".
            return "open now" if opens <= now else f"{opens.astimezone(zone):%a %Y-%m-%d %H:%M}"

        shown = ((opening(o), closing(c)) for o, c in upcoming)
        return format_html_join("", "<div>{} → {}</div>", shown) or f"never within {PREVIEW_WEEKS.days // 7} weeks"
