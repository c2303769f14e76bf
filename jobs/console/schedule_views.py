"""The console's schedule pages: every cron entry with where it comes from (the code, the
code edited, an operator), its next run in its own zone and UTC, its last run and
error; a schedule's page with its next five runs, its last runs and the forms that
edit, pause, resume, run, reset and delete it; the form adding an operator's own.

Thin: every change is a call to ``jobs.upkeep.schedules``, which checks the values; a
value it refuses is a form error at the field it names, with its hint, and nothing
changes. The schedules' own permissions apply (not the jobs'): view to see, add to add,
change for the rest (delete too, as in ``/api/schedules/``)."""

from __future__ import annotations

import functools
import json
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.views import View

from apikit.parsers import MAX_DEPTH, LoneSurrogate, NestedTooDeeply, loads
from jobs.console.views import _ConsoleView, flow_rights
from jobs.core import access, cron_times, registry
from jobs.core.errors import SubmitError
from jobs.core.models import Priority, Schedule
from jobs.upkeep import schedules

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# The definition's fields as the pages say them, in the order they read them.
FIELD_NAMES = {"cron": "cron", "time_zone": "time zone", "job_type": "job type", "priority": "priority",
               "payload": "payload"}  # fmt: skip


def schedule_rights(user) -> dict[str, bool]:
    """Seeing jobs does not imply steering the schedules: their own permissions."""
    return {
        "schedules_sees": access.sees_all(user, Schedule),
        "schedules_acts": access.acts_on_all(user, Schedule),
        "schedules_adds": access.sees_all(user, Schedule) and user.has_perm("jobs.add_schedule"),
    }


@functools.cache
def known_zones() -> list[str]:
    """For the zone field's suggestions (any IANA name is taken)."""
    return sorted(zoneinfo.available_timezones())


# --- How times and origins read ------------------------------------------------------------


def when(at: datetime | None, zone_name: str) -> dict[str, Any] | None:
    """A moment in the entry's own zone and in UTC (the zone is the one its cron reads)."""
    if at is None:
        return None
    utc = at.astimezone(UTC)
    try:
        local = at.astimezone(cron_times.zone(zone_name))
    except ValueError:  # stored before validation tightened: UTC only
        local = utc
    offset = local.strftime("%z")
    return {
        "local": f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}",
        "offset": f"UTC{offset[:3]}:{offset[3:]}",
        "utc": f"{utc:%Y-%m-%d %H:%M} UTC",
        "in_utc": local is utc or zone_name == "UTC",  # one reading says it all
    }


def _value(key: str, value: Any) -> str:
    if key == "payload":
        return json.dumps(value, sort_keys=True)
    if key == "priority" and not value:
        return "the type's own"
    return f'"{value}"' if key == "cron" else str(value)


def origin(row: Schedule) -> tuple[str, str]:
    """(kind, words): from code, edited (and what the code says of what changed), or an
    operator's own."""
    if not row.from_code:
        return "operator", "operator's"
    if not row.overridden:
        return "code", "from code"
    differs = [key for key in FIELD_NAMES if getattr(row, key) != row.code.get(key)]
    said = ", ".join(f"{FIELD_NAMES[key]} {_value(key, row.code.get(key))}" for key in differs)
    return "edited", f"edited (code: {said})"


def type_priority(row: Schedule) -> str:
    job_type = registry.all_types().get(row.job_type)
    return job_type.priority if job_type else "unknown type"


# --- Forms ----------------------------------------------------------------------------------


class PayloadField(forms.CharField):
    """A JSON text in the form, the value it reads as for the service."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 60, "class": "jd-mono", "spellcheck": "false"})

    def to_python(self, value: Any) -> Any:
        text = (super().to_python(value) or "").strip() or "{}"
        try:
            return loads(text, max_depth=_PAYLOAD_DEPTH, parse_constant=_no_constant)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"payload: not JSON ({error.msg}, line {error.lineno} column {error.colno}). "
                'Write a JSON object, e.g. {"seconds": 1}, or {} for none.'
            ) from None
        except NestedTooDeeply:
            raise forms.ValidationError(f"payload: nested deeper than {_PAYLOAD_DEPTH} levels. Flatten it.") from None
        except LoneSurrogate as error:
            raise forms.ValidationError(f"payload: {error.message}") from None
        except ValueError as error:  # NaN, Infinity, 1e400: not numbers JSON or the database keeps
            raise forms.ValidationError(f"payload: {error}. Write numbers within a float's range.") from None


# As deep as a payload the API takes (its body is a level more: apikit.parsers).
_PAYLOAD_DEPTH = MAX_DEPTH - 1


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


class ScheduleForm(forms.Form):
    """What an operator may change on an entry (the service checks each value)."""

    cron = forms.CharField(max_length=100, help_text=cron_times.HINT)
    time_zone = forms.CharField(
        max_length=64, initial="UTC", help_text="The cron reads this zone's clock. " + cron_times.ZONE_HINT,
        widget=forms.TextInput(attrs={"list": "jd-zones", "autocomplete": "off"}),
    )  # fmt: skip
    priority = forms.ChoiceField(choices=[("", "the type's own"), *Priority.choices], required=False)
    payload = PayloadField(required=False, initial="{}", help_text="A JSON object, checked as a submit checks it.")

    def refused(self, error: SubmitError) -> None:
        """The service's refusal, at the field it names, with its hint."""
        named = error.field or ""
        field = "job_type" if named == "type" else named.split(".")[0]
        if field not in self.fields:
            field = ""
        hint = "" if not error.hint or error.hint in error.message else f" {error.hint}"
        self.add_error(field or None, f"{named}: {error.message}{hint}" if named else f"{error.message}{hint}")

    def values(self) -> dict[str, Any]:
        return {key: self.cleaned_data[key] for key in schedules.EDITABLE if key in self.cleaned_data}


def _type_choices() -> list[tuple[str, str]]:
    """The public types: an internal one runs from code (and the code's entries) only."""
    return [(name, name) for name, job_type in sorted(registry.all_types().items()) if job_type.public]


class NewScheduleForm(ScheduleForm):
    name = forms.CharField(max_length=100, help_text="Letters, digits, '.', '_' and '-'.")
    job_type = forms.ChoiceField(choices=_type_choices)

    field_order = ["name", "job_type", "cron", "time_zone", "priority", "payload"]


def _edit_form(row: Schedule, data=None) -> ScheduleForm:
    initial = {"cron": row.cron, "time_zone": row.time_zone, "priority": row.priority,
               "payload": json.dumps(row.payload, indent=2, sort_keys=True)}  # fmt: skip
    return ScheduleForm(data, initial=initial, prefix="edit")


# --- Views ------------------------------------------------------------------------------------


class _ScheduleView(_ConsoleView):
    reading = "schedules_sees"
    writing = "schedules_acts"

    def dispatch(self, request, *args, **kwargs):
        rights = schedule_rights(request.user)
        if not rights[self.reading if request.method in SAFE_METHODS else self.writing]:
            raise PermissionDenied
        return View.dispatch(self, request, *args, **kwargs)  # the schedules' permission, not the jobs'

    def context(self, request, **extra) -> dict:
        rights = {**flow_rights(request.user), **schedule_rights(request.user)}
        return {**super().context(request), "opts": Schedule._meta, **rights, **extra}

    @staticmethod
    def row(name: str) -> Schedule:
        row = Schedule.objects.filter(name=name).first() if "\x00" not in name else None  # no stored name has NUL
        if row is None:
            raise Http404(f"No schedule named {name!r}.")
        return row

    @staticmethod
    def by(request) -> str:
        return str(request.user)


def _next_said(row: Schedule) -> str:
    shown = when(row.next_run_at, row.time_zone)
    if row.paused or shown is None:
        return "paused: no run until resumed" if row.paused else "no next run"
    return f"next run {shown['local']}" + ("" if shown["in_utc"] else f" ({shown['utc']})")


class SchedulesView(_ScheduleView):
    """Every entry, and (for those who may add) the form for an operator's own."""

    writing = "schedules_adds"

    def get(self, request) -> HttpResponse:
        return self.page(request, NewScheduleForm(prefix="new"))

    def post(self, request) -> HttpResponse:
        form = NewScheduleForm(request.POST, prefix="new")
        if form.is_valid():
            name = form.cleaned_data["name"]
            try:
                row = schedules.create(name, form.values() | {"job_type": form.cleaned_data["job_type"]},
                                       by=self.by(request))  # fmt: skip
            except SubmitError as error:
                form.refused(error)
            else:
                messages.success(request, f"Added the schedule {name}: {_next_said(row)}.")
                return HttpResponseRedirect(reverse("admin:jobs_schedule", args=[name]))
        return self.page(request, form)

    def page(self, request, form: NewScheduleForm) -> HttpResponse:
        listed = []
        for row in Schedule.objects.order_by("name"):
            runs = schedules.last_runs(row)
            listed.append({
                "row": row, "origin": origin(row), "next": when(row.next_run_at, row.time_zone),
                "last": runs[0] if runs else None, "last_label": runs[0].status.replace("_", " ") if runs else "",
                "last_at": when(runs[0].created_at if runs else row.last_run_at, row.time_zone),
            })  # fmt: skip
        return TemplateResponse(
            request, "admin/jobs/schedules.html",
            self.context(request, title="Schedules", schedules=listed, form=form, zones=known_zones()),
        )  # fmt: skip


class ScheduleView(_ScheduleView):
    """One entry: its fields, next five runs, last runs; POST saves the edit form."""

    def get(self, request, name: str) -> HttpResponse:
        row = self.row(name)
        return self.page(request, row, _edit_form(row))

    def post(self, request, name: str) -> HttpResponse:
        row = self.row(name)
        form = _edit_form(row, request.POST)
        if form.is_valid():
            # Only what the operator changed: a field left as it was keeps its value even
            # if someone else changed it meanwhile.
            changes = {key: value for key, value in form.values().items() if value != getattr(row, key)}
            if not changes:
                messages.info(request, f"Schedule {name} is already so: nothing changed.")
                return HttpResponseRedirect(request.path)
            try:
                row = schedules.edit(name, changes, by=self.by(request))
            except SubmitError as error:
                form.refused(error)
            else:
                said = ", ".join(f"{FIELD_NAMES[key]} {_value(key, getattr(row, key))}" for key in changes)
                messages.success(request, f"Saved {name}: {said}; {_next_said(row)}.")
                return HttpResponseRedirect(request.path)
        return self.page(request, row, form)

    def page(self, request, row: Schedule, form: ScheduleForm) -> HttpResponse:
        kind, words = origin(row)
        code = None
        if row.from_code:
            code = [(words, _value(key, row.code.get(key))) for key, words in FIELD_NAMES.items()]
        return TemplateResponse(
            request, "admin/jobs/schedule.html",
            self.context(
                request, title=f"Schedule {row.name}", row=row, origin=(kind, words), code=code, form=form,
                payload=json.dumps(row.payload, indent=2, sort_keys=True), type_priority=type_priority(row),
                next_runs=[when(at, row.time_zone) for at in schedules.next_runs(row)],
                last_runs=[(run, when(run.created_at, row.time_zone), run.status.replace("_", " "))
                           for run in schedules.last_runs(row)],
                last_run_at=when(row.last_run_at, row.time_zone), zones=known_zones(),
                can_reset=row.from_code and row.overridden, can_delete=not row.from_code,
            ),
        )  # fmt: skip


class ScheduleActView(_ScheduleView):
    """The schedule page's buttons: pause, resume, run now, reset to code."""

    def post(self, request, name: str, verb: str) -> HttpResponse:
        if verb not in ("pause", "resume", "run-now", "reset"):
            raise Http404
        name, by = self.row(name).name, self.by(request)
        try:
            if verb in ("pause", "resume"):
                row = schedules.set_paused(name, verb == "pause", by=by)
                done = "Paused" if row.paused else "Resumed"
                messages.success(request, f"{done} {name}: {_next_said(row)}.")
            elif verb == "reset":
                row = schedules.reset(name, by=by)
                messages.success(request, f"Schedule {name} follows the code again: {_next_said(row)}.")
            else:
                job = schedules.run_now(name)
                link = reverse("admin:jobs_job_change", args=[job.id])
                messages.success(request, format_html(
                    'Queued job <a href="{}" id="jd-new-job">{}</a> ({}) for {}, outside its timetable.',
                    link, str(job.id)[:8], job.type, name,
                ))  # fmt: skip
        except SubmitError as error:  # e.g. its type is gone from the code, or reset of an operator's own
            field = f"{error.field}: " if error.field else ""
            messages.error(request, f"{field}{error.message} {error.hint}".strip())
        except Schedule.DoesNotExist:  # deleted by someone else just then: nothing ran
            messages.error(request, f"Schedule {name} was deleted meanwhile: nothing ran.")
            return HttpResponseRedirect(reverse("admin:jobs_schedules"))
        return HttpResponseRedirect(reverse("admin:jobs_schedule", args=[name]))


class ScheduleDeleteView(_ScheduleView):
    """An operator's own entry, after a confirmation (GET asks, POST deletes)."""

    reading = "schedules_acts"  # the question is only for those who may answer it

    def get(self, request, name: str) -> HttpResponse:
        row = self.row(name)
        return TemplateResponse(
            request, "admin/jobs/schedule_delete.html",
            self.context(request, title=f"Delete the schedule {row.name}?", row=row, origin=origin(row)),
        )  # fmt: skip

    def post(self, request, name: str) -> HttpResponse:
        name = self.row(name).name
        try:
            schedules.delete(name)
        except SubmitError as error:  # declared in code
            messages.error(request, f"{error.message} {error.hint}".strip())
            return HttpResponseRedirect(reverse("admin:jobs_schedule", args=[name]))
        messages.success(request, f"Deleted the schedule {name}.")
        return HttpResponseRedirect(reverse("admin:jobs_schedules"))
