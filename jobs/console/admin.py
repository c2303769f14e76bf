"""The operations console edge: read any job, act through the same services
as the API (``jobs.core.actions``), every act recorded in the job's timeline with the operator.

Staff with change permission act; the read-only operators group (view permissions
only, see migration 0005) sees everything and acts on nothing. The list stays fast on
millions of rows: counts are capped, the type filter comes from the registry (no
DISTINCT scan), a job id or its start is looked up in the key's index.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import conditional_escape, format_html, format_html_join

from jobs.console import schedule_views
from jobs.console import views as console
from jobs.console.input_checks import CheckedChangeList, InputChecked
from jobs.console.views import system_types
from jobs.core import actions, registry, transitions
from jobs.core.models import FINAL_STATUSES, WITH_ERROR_MESSAGE, Batch, Job, JobEvent, Status
from jobs.insight import estimates, payload_search
from jobs.insight import workers as worker_labels

COUNT_CAP = 10_000  # beyond this, the list says "10,000+" instead of counting every row


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: an exact COUNT(*) over millions of jobs on every
    page view is the classic way an admin becomes unusable."""

    object_list: QuerySet  # the admin pages querysets

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: COUNT_CAP + 1].count()


class ConsoleJobs(QuerySet):
    """The list's queryset. The date hierarchy asks for the distinct years, months or
    days that have jobs: a DISTINCT over every row (0.35 s at 1M jobs). Here those are
    the periods between the first and the last job instead (two index lookups); a period
    with no job in between shows an empty list when chosen."""

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        first, last = timezone.localtime(bounds["first"]), timezone.localtime(bounds["last"])
        periods, at = [], _period_start(first, kind)
        while at <= last:
            periods.append(at)
            at = _next_period(at, kind)
        return periods if order == "ASC" else periods[::-1]


def _period_start(moment, kind: str):
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(month=1, day=1) if kind == "year" else moment.replace(day=1) if kind == "month" else moment


def _next_period(start, kind: str):
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + timedelta(days=1)


class SafeChangeList(CheckedChangeList):
    """The page is titled "Jobs", not "Select job to change"."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.title = "Jobs"


class SystemJobsFilter(admin.SimpleListFilter):
    """Thousands of successful cron runs a day would bury the jobs people submit: those
    are hidden unless asked for. A system job that failed always shows, and a search
    (an id, a key, a value in a payload) looks at every job."""

    title = "system jobs"
    parameter_name = "system"

    def __init__(self, request, params, model, model_admin) -> None:
        self.request = request
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return [("all", "all runs"), ("only", "only system jobs")]

    def choices(self, changelist):
        choices = list(super().choices(changelist))
        choices[0] = {**choices[0], "display": "completed runs hidden"}  # the default, not "All"
        if self.value() is None and shows_every_run(self.request):  # a search, or a system type asked for
            choices[0]["selected"] = False
            choices[1] = {**choices[1], "selected": True}
        return choices

    def queryset(self, request, queryset):
        if self.value() == "only":
            return queryset.filter(type__in=system_types())
        if shows_every_run(request):
            return queryset
        return queryset.exclude(type__in=system_types(), status=Status.COMPLETE)


def shows_every_run(request) -> bool:
    """Does the list show system jobs' completed runs: asked for ("all runs", "only"), a
    system type picked, or a search (which looks at every job)?"""
    return (
        request.GET.get("system") in ("all", "only")
        or request.GET.get("type") in system_types()
        or bool(request.GET.get("q", "").strip())
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text.strip())
        return True
    except ValueError:
        return False


# The start of a job's id as the list shows it (8 hex digits), or longer: found by a
# range of the primary key's index.
_ID_PREFIX = re.compile(r"[0-9a-f]{8}(?:-?[0-9a-f]{1,4}){0,3}(?:-?[0-9a-f]{1,12})?-?", re.IGNORECASE)


def _ids_starting(term: str) -> Q | None:
    """The jobs whose id starts with ``term`` (as the list shows ids: ``a1b2c3d4``), as
    a range of ids; None when it cannot be the start of one."""
    if not _ID_PREFIX.fullmatch(term):
        return None
    digits = term.replace("-", "").lower()
    if len(digits) > 32:
        return None
    return Q(pk__gte=uuid.UUID(digits.ljust(32, "0")), pk__lte=uuid.UUID(digits.ljust(32, "f")))


class TypeFilter(admin.SimpleListFilter):
    """Job types from the registry, not from a DISTINCT over the whole table."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(registry.all_types())]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


class BatchFilter(admin.SimpleListFilter):
    """The jobs of one batch (``?batch=<id>``, as the batch's page links), or of none."""

    title = "batch"
    parameter_name = "batch"

    def lookups(self, request, model_admin):
        recent = Batch.objects.order_by("-created_at")[:10]
        return [("none", "in no batch"), *((str(b.pk), str(b)[:40]) for b in recent)]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "none":
            return queryset.filter(batch__isnull=True)
        if not _is_uuid(value):
            raise IncorrectLookupParameters(f"{value!r} is not a batch id")
        return queryset.filter(batch_id=value)


class JobEventInline(admin.TabularInline):
    """The timeline: every state change, action and note, with who did it."""

    model = JobEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "seq", "kind", "from_status", "to_status", "who_shown", "message_shown"]
    readonly_fields = cast(list[str], fields)  # names only, no groups
    ordering = ["created_at", "id"]
    verbose_name_plural = "timeline"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # an inline lives for one request: so does this
        self._known: dict = {}

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def _labels(self, event: JobEvent) -> dict[str, str]:
        if event.job_id not in self._known:
            self._known[event.job_id] = worker_labels.labels(Job.objects.filter(pk=event.job_id))
        return self._known[event.job_id]

    @admin.display(description="who")
    def who_shown(self, event: JobEvent) -> str:
        return _readable(event.who, self._labels(event))

    @admin.display(description="message")
    def message_shown(self, event: JobEvent) -> str:
        return _readable(event.message, self._labels(event))


ACT_AT_ONCE = 1000  # jobs one action may touch in one request (each is a move plus Redis calls)


def _too_many(modeladmin, request, queryset) -> bool:
    """A "select all" over a huge filter would act on every row in one request."""
    if queryset.order_by()[: ACT_AT_ONCE + 1].count() <= ACT_AT_ONCE:
        return False
    modeladmin.message_user(
        request,
        f"More than {ACT_AT_ONCE:,} jobs selected: narrow the filter first (dead letters: use "
        "'Requeue dead letters matching this filter', failed jobs: 'Retry failed jobs matching this filter').",
        messages.ERROR,
    )
    return True


def _bulk(name: str, service, verb: str, description: str):
    """An admin action applying one service to each selected job (at most ACT_AT_ONCE)."""

    def act(modeladmin, request, queryset):
        if not _too_many(modeladmin, request, queryset):
            console.act_on_each(request, queryset.values_list("id", flat=True), service, verb)

    act.__name__ = name  # the admin names actions after their function
    return admin.action(description=description, permissions=["change"])(act)


requeue_jobs = _bulk("requeue_jobs", actions.requeue, "Requeued", "Requeue selected jobs (new round of attempts)")
run_jobs_now = _bulk("run_jobs_now", actions.run_now, "Queued now", "Run selected scheduled or retrying jobs now")
cancel_jobs = _bulk("cancel_jobs", actions.cancel, "Canceled", "Cancel selected jobs")
promote_jobs = _bulk("promote_jobs", actions.promote, "Promoted", "Promote selected jobs to immediate")


@admin.action(description="Requeue the selected dead letters…", permissions=["change"])
def requeue_dead_letters(modeladmin, request, queryset):
    """With a confirmation page that says how many it will touch (like delete)."""
    if _too_many(modeladmin, request, queryset):
        return None
    dead = queryset.filter(status=Status.DEAD_LETTER)
    if request.POST.get("confirmed"):
        console.act_on_each(request, list(dead.values_list("id", flat=True)), actions.requeue, "Requeued")
        return None
    return TemplateResponse(
        request,
        "admin/jobs/job/requeue_dead_letters.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Requeue dead letters",
            "opts": modeladmin.model._meta,
            "count": dead.count(),
            "skipped": queryset.count() - dead.count(),
            # "Select all" is carried as such (the list's filter is in the URL), not as ids.
            "select_across": request.POST.get("select_across") == "1",
            "selected": [] if request.POST.get("select_across") == "1" else request.POST.getlist(ACTION_CHECKBOX_NAME),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )


def _badge(status: str) -> str:
    return format_html('<span class="jd-status jd-{}">{}</span>', status, status.replace("_", " "))


def _bar(percent: int, status: str = "") -> str:
    """The fill takes the status's colour: a failed job's bar is red, not a green 100 %."""
    return format_html(
        '<span class="jd-bar"><span class="jd-fill jd-fill-{}" style="width:{}%"></span></span>'
        '<span class="jd-pct">{}%</span>',
        status, percent, percent,
    )  # fmt: skip


ERROR_SHOWN = 60  # characters of the error message in the list; the whole of it in the tooltip
# Recovery actions written for API clients name an endpoint; the console offers its button.
_ENDPOINT = re.compile(r"\s*\(?POST …/([a-z-]+)/\)?")
_VERB_OF_ENDPOINT = {"retry": "requeue", "requeue": "requeue", "cancel": "cancel", "run-now": "run-now",
                     "promote": "promote"}  # fmt: skip
_BUTTON_OF_VERB = {"requeue": "Retry", "cancel": "Cancel", "run-now": "Run now", "promote": "Promote"}


@admin.register(Job)
class JobAdmin(InputChecked, admin.ModelAdmin):
    list_display = [
        "short_id", "type_shown", "status_badge", "progress_bar", "priority", "owner", "tries", "eta_or_duration",
        "age", "error_column",
    ]  # fmt: skip
    list_filter = ["status", TypeFilter, SystemJobsFilter, BatchFilter, "priority", "error_category", "heavy", "owner"]
    search_fields = ["type"]  # the search itself is get_search_results
    search_help_text = (
        "A search looks at every job, system runs too. A job id, its first 8 digits or an idempotency key "
        "finds that job (a UUID is also looked for in payloads); other words match job types, an "
        "idempotency key, the error message of a failed, dead-lettered, retrying or canceled job, "
        "or (3 characters or more) a value in the payload: a customer id, an order number."
    )
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    inlines = [JobEventInline]
    actions = [requeue_jobs, run_jobs_now, cancel_jobs, promote_jobs, requeue_dead_letters]
    readonly_fields = [
        "id", "type", "status_badge", "progress_bar", "stage", "priority", "heavy_shown", "owner", "attempts",
        "max_attempts", "timeout_shown", "idempotency_key", "pretty_payload", "pretty_result", "error_category",
        "error_shown", "advice", "advice_plain", "traceback", "seq", "rq_job_id", "worker_shown", "created_at",
        "enqueued_at", "scheduled_for", "started_at", "finished_at", "eta_or_duration", "first_estimated_start_at",
        "first_estimated_finish_at", "eta_error", "dependencies", "dependents_list", "batch_link",
        "lease_expires_at",
    ]  # fmt: skip
    # What an operator reads first stays open; the rest is one click away (a shorter page).
    fieldsets = [
        (None, {"fields": ["id", "type", "status_badge", "progress_bar", "stage", "priority", "heavy_shown",
                           "owner", "batch_link"]}),
        ("Attempts and errors", {"fields": ["attempts", "max_attempts", "worker_shown", "timeout_shown",
                                             "error_category", "error_shown", "advice", "traceback"]}),
        ("Times", {"fields": ["created_at", "enqueued_at", "scheduled_for", "started_at", "finished_at",
                              "eta_or_duration"]}),
        ("Payload and result", {"classes": ["collapse"], "fields": ["idempotency_key", "pretty_payload",
                                                                    "pretty_result"]}),
        ("Dependencies", {"classes": ["collapse"], "fields": ["dependencies", "dependents_list"]}),
        ("Estimates", {"classes": ["collapse"], "fields": ["first_estimated_start_at", "first_estimated_finish_at",
                                                           "eta_error"]}),
        ("Dispatch", {"classes": ["collapse"], "fields": ["seq", "rq_job_id", "lease_expires_at"]}),
    ]  # fmt: skip

    class Media:
        css = {"all": ["jobs/console.css"]}
        js = ["jobs/console.js"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs enter through the submit service, never as raw rows

    def has_delete_permission(self, request, obj=None) -> bool:
        # A deleted row strands its RQ entry and dependents and erases the audit trail:
        # jobs end by cancel, and leave by the retention cron.
        return False

    def get_fieldsets(self, request, obj=None):
        """Recovery actions offer their buttons only to those who may act."""
        if self.has_change_permission(request, obj):
            return self.fieldsets
        plain = lambda f: "advice_plain" if f == "advice" else f  # noqa: E731
        return [(name, {**opts, "fields": [plain(f) for f in opts["fields"]]}) for name, opts in self.fieldsets]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Every field is read-only, but the admin would still save the whole row on a
        # POST: a stale copy written over a live job's status. Jobs change only through
        # lifecycle moves (the actions and buttons).
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"], "Jobs change through the actions, not this form.")
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        own = [
            path("dashboard/", self.admin_site.admin_view(console.DashboardView.as_view(admin=self)),
                 name="jobs_dashboard"),
            path("dashboard/data/", self.admin_site.admin_view(console.DashboardDataView.as_view(admin=self)),
                 name="jobs_dashboard_data"),
            path("requeue-dead-letters/",
                 self.admin_site.admin_view(console.RequeueMatchingView.as_view(admin=self)),
                 name="jobs_requeue_matching"),
            path("retry-failed/",
                 self.admin_site.admin_view(console.RequeueMatchingView.as_view(admin=self, status=Status.FAILED)),
                 name="jobs_retry_failed_matching"),
            path("cells/", self.admin_site.admin_view(console.RowCellsView.as_view(admin=self)), name="jobs_cells"),
            path("flow/", self.admin_site.admin_view(console.FlowView.as_view(admin=self)), name="jobs_flow"),
            path("flow/<str:kind>/<str:name>/<str:verb>/",
                 self.admin_site.admin_view(console.FlowActView.as_view(admin=self)), name="jobs_flow_act"),
            path("schedules/", self.admin_site.admin_view(schedule_views.SchedulesView.as_view(admin=self)),
                 name="jobs_schedules"),
            path("schedules/<str:name>/", self.admin_site.admin_view(schedule_views.ScheduleView.as_view(admin=self)),
                 name="jobs_schedule"),
            path("schedules/<str:name>/delete/",
                 self.admin_site.admin_view(schedule_views.ScheduleDeleteView.as_view(admin=self)),
                 name="jobs_schedule_delete"),
            path("schedules/<str:name>/<str:verb>/",
                 self.admin_site.admin_view(schedule_views.ScheduleActView.as_view(admin=self)),
                 name="jobs_schedule_act"),
            path("<uuid:job_id>/act/<str:verb>/", self.admin_site.admin_view(console.ActView.as_view(admin=self)),
                 name="jobs_act"),
        ]  # fmt: skip
        return own + super().get_urls()

    def get_queryset(self, request) -> QuerySet:
        jobs = super().get_queryset(request)
        return ConsoleJobs(model=jobs.model, query=jobs.query, using=jobs.db)

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        """A UUID is a job id, an idempotency key or a value in payloads; the start of an
        id (as the list shows it) finds the job too; anything searches the text fields
        and payloads."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            job_id = uuid.UUID(term)
        except ValueError:
            other, by_id = _text_search(term), _ids_starting(term)
            return payload_search.matching(queryset, term, other if by_id is None else other | by_id), False
        # A UUID is a job's id, an idempotency key — or an id of the team's own kept in
        # payloads (an order's, a customer's).
        return payload_search.matching(queryset, str(job_id), Q(pk=job_id) | Q(idempotency_key=term)), False

    def get_changelist(self, request, **kwargs):
        return SafeChangeList

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        if changelist.query:
            # Drilling into dates means little in a search's results, and the first and
            # last dates of a search that matches little cost two scans of the table.
            changelist.date_hierarchy = None
        _attach_estimates(changelist.result_list)
        _attach_worker_labels(changelist.result_list)
        return changelist

    def changelist_view(self, request, extra_context=None):
        # Routine system runs are left out of the "changes to other jobs" count only where
        # the list leaves them out too.
        hidden = [] if shows_every_run(request) else system_types()
        extra = {"can_act": self.has_change_permission(request), "system_types": hidden, **(extra_context or {})}
        return super().changelist_view(request, extra)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)  # None for an unknown or malformed id
        status = job.status if job else None
        extra = {
            "can_act": self.has_change_permission(request),
            # Only the buttons the job's state allows (the services still check).
            "acts": [verb for verb, move in console.MOVE_OF.items() if transitions.allowed(move, status)],
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def row_cells(self, request, ids: list[str]) -> dict[str, dict[str, str]]:
        """The list's cells that follow a job's status, for the live page (RowCellsView):
        the same columns the page rendered, so a live update reads like a reload; and the
        job page's live message (the whole error, workers as host:pid)."""
        wanted = [text for text in ids if _is_uuid(text)]
        jobs = list(self.get_queryset(request).filter(pk__in=wanted))
        _attach_estimates(jobs)
        _attach_worker_labels(jobs)
        return {
            str(job.id): {"eta": conditional_escape(self._eta_text(job)), "tries": _tries_text(job),
                          "error": _error_text(job), "message": _readable(job.error_message, _labels_of(job))}
            for job in jobs
        }  # fmt: skip

    # --- columns -----------------------------------------------------------------

    @admin.display(description="id")
    def short_id(self, job: Job) -> str:
        return str(job.id)[:8]

    @admin.display(description="type", ordering="type")
    def type_shown(self, job: Job) -> str:
        """The type; a job of a batch has its batch under it (a link to the batch's page):
        the list's batch column, within the type's width (the list fits 1280 px)."""
        if job.batch_id is None:
            return job.type
        return format_html('{}<br><span class="jd-batch-of">batch {}</span>', job.type, self.batch_link(job))

    @admin.display(description="batch")
    def batch_link(self, job: Job) -> str:
        if job.batch_id is None:
            return "—"
        return format_html(
            '<a href="{}" title="{}">{}</a>', reverse("admin:jobs_batch_change", args=[job.batch_id]), job.batch_id,
            str(job.batch_id)[:8],
        )  # fmt: skip

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        return format_html('<span data-job="{}" data-field="status">{}</span>', job.id, _badge(job.status))

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> str:
        return format_html(
            '<span data-job="{}" data-field="progress">{}</span>', job.id, _bar(job.progress, job.status)
        )

    @admin.display(description="tries", ordering="attempts")
    def tries(self, job: Job) -> str:
        return format_html('<span data-job="{}" data-field="tries">{}</span>', job.id, _tries_text(job))

    @admin.display(description="created", ordering="created_at")
    def age(self, job: Job) -> str:
        """How long ago, with the moment itself (in the operator's zone) in the tooltip."""
        return format_html('<span class="jd-age" title="{}">{}</span>', _stamp(job.created_at), _ago(job.created_at))

    @admin.display(description="error")
    def error_column(self, job: Job) -> str:
        return format_html('<span data-job="{}" data-field="error">{}</span>', job.id, _error_text(job))

    @admin.display(description="ETA / duration")
    def eta_or_duration(self, job: Job) -> str:
        return format_html('<span data-job="{}" data-field="eta">{}</span>', job.id, self._eta_text(job))

    def _eta_text(self, job: Job) -> str:
        if job.status in FINAL_STATUSES or job.status == Status.ACTIVE:
            seconds = job.duration_seconds
            if job.status == Status.ACTIVE and job.started_at:
                guess = getattr(job, "estimate", None)
                if guess is None or guess.finish_at is None:
                    return "running"
                return _ranged("finishes", guess.finish_at, guess.finish_range, guess.cold)
            return _seconds(seconds)
        guess = getattr(job, "estimate", None) or estimates.for_job(job)
        if guess.paused:
            return format_html('<span class="jd-paused jd-hint" title="{}">paused</span>', guess.warning)
        if guess.start_at is None:
            return (
                format_html('<span class="jd-hint" title="{}">no estimate</span>', guess.warning)
                if guess.warning
                else "—"
            )
        return _ranged("starts", guess.start_at, guess.start_range, guess.cold)

    # --- detail ------------------------------------------------------------------

    @admin.display(description="payload")
    def pretty_payload(self, job: Job) -> str:
        return format_html("<pre class='jd-pre'>{}</pre>", json.dumps(job.payload, indent=2, sort_keys=True))

    @admin.display(description="result")
    def pretty_result(self, job: Job) -> str:
        return format_html("<pre class='jd-pre'>{}</pre>", json.dumps(job.result, indent=2, sort_keys=True))

    @admin.display(description="traceback")
    def traceback(self, job: Job) -> str:
        return format_html("<pre class='jd-pre'>{}</pre>", job.error_details) if job.error_details else "—"

    @admin.display(description="worker")
    def worker_shown(self, job: Job) -> str:
        """The worker that runs (or last ran) it, as host:pid; RQ's name in the tooltip."""
        if not job.worker_name:
            return "—"
        return _readable(job.worker_name, _labels_of(job))

    @admin.display(description="error message")
    def error_shown(self, job: Job) -> str:
        return _readable(job.error_message, _labels_of(job)) if job.error_message else "—"

    @admin.display(description="heavy")
    def heavy_shown(self, job: Job) -> str:
        return "yes (runs inside the work window)" if job.heavy else "no"

    @admin.display(description="timeout")
    def timeout_shown(self, job: Job) -> str:
        return _seconds(job.timeout)

    @admin.display(description="first ETA's error")
    def eta_error(self, job: Job) -> str:
        """Actual start − first estimate: "+1.2 s" started later than said."""
        if job.eta_error_seconds is None:
            return "—"
        return f"{'+' if job.eta_error_seconds >= 0 else '−'}{_seconds(abs(job.eta_error_seconds))}"

    @admin.display(description="recovery actions")
    def advice(self, job: Job) -> str:
        """Each action in words; one that names an API endpoint ("POST …/retry/") becomes
        the console's button for that act, when the job's state allows it."""
        if not job.recovery_actions:
            return "—"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((_advice(job, a),) for a in job.recovery_actions))
        )

    @admin.display(description="recovery actions")
    def advice_plain(self, job: Job) -> str:
        if not job.recovery_actions:
            return "—"
        lines = ((_ENDPOINT.sub("", a),) for a in job.recovery_actions)
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", lines))

    @admin.display(description="depends on")
    def dependencies(self, job: Job) -> str:
        return _job_links(job.depends_on.all())

    @admin.display(description="needed by")
    def dependents_list(self, job: Job) -> str:
        return _job_links(job.dependents.all())


def _text_search(term: str) -> Q:
    """Words match job types (by name, among the registered ones), an idempotency key
    exactly, or the error message of a job that has one. Each part has an index to use:
    a plain substring search over three columns of a million rows took 8 s when
    nothing matched."""
    types = [name for name in registry.all_types() if term.lower() in name.lower()]
    # "<> ''" lets PostgreSQL use the error message's trigram index (partial on it, 0009).
    errors = Q(status__in=WITH_ERROR_MESSAGE, error_message__icontains=term) & ~Q(error_message="")
    return Q(type__in=types) | Q(idempotency_key=term) | errors


def _when(moment) -> str:
    """Today's times as a clock reading; other days with their date; with the zone."""
    local = timezone.localtime(moment)
    return f"{local:%H:%M:%S %Z}" if local.date() == timezone.localdate() else f"{local:%Y-%m-%d %H:%M %Z}"


def _ranged(what: str, at, between, cold: bool) -> str:
    """ "starts 14:02:10 – 14:09:30 CET": the 80 % range, the estimate itself in the
    tooltip; one time when the range is narrower than a second."""
    tip = f"estimate {_when(at)}; it falls in this range 8 times in 10"
    if cold:
        tip += " (wide: a job type without history is in play)"
    if between is None or (between[1] - between[0]).total_seconds() < 1:
        return format_html('<span class="jd-hint" title="{}">{} ≈ {}</span>', tip, what, _when(at))
    low, high = (timezone.localtime(t) for t in between)
    if low.date() == high.date() == timezone.localdate():
        text = f"{low:%H:%M:%S} – {high:%H:%M:%S %Z}"
    else:
        text = f"{_when(low)} – {_when(high)}"
    return format_html('<span class="jd-hint" title="{}">{} {}</span>', tip, what, text)


def _stamp(moment) -> str:
    """A moment in the operator's zone, with that zone."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}" if moment else "—"


def _ago(moment) -> str:
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def _seconds(value: float | None) -> str:
    """Human durations: "0.0 s", "1.2 s", "45 s", "3 min 20 s", "2 h 5 min"."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} s"
    if value < 90:
        return f"{value:.0f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 90:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _advice(job: Job, text: str) -> str:
    """The endpoint a recovery action names, as the console's button (a submit button of
    the page's form, posting to the act view: forms do not nest)."""
    found = _ENDPOINT.search(text)
    verb = _VERB_OF_ENDPOINT.get(found.group(1)) if found else None
    if not found or verb is None:
        return format_html("{}", text)
    words = _ENDPOINT.sub("", text)
    if not transitions.allowed(console.MOVE_OF[verb], job.status):
        return format_html("{}", words)
    url = reverse("admin:jobs_act", args=[job.id, verb])
    return format_html(
        '{} <button type="submit" class="button jd-advice-act" formaction="{}" formmethod="post" '
        'data-verb="{}">{}</button>',
        words, url, verb, _BUTTON_OF_VERB[verb],
    )  # fmt: skip


def _tries_text(job: Job) -> str:
    """Attempts made of those allowed: "2/3"."""
    return f"{job.attempts}/{job.max_attempts}"


def _error_text(job: Job) -> str:
    """The start of the message, workers named host:pid; the whole of it (with RQ's
    worker names) in the tooltip."""
    if job.status not in WITH_ERROR_MESSAGE or not job.error_message:
        return "—"
    text = "".join(piece for piece, _ in worker_labels.spans(job.error_message, _labels_of(job)))
    shown = text if len(text) <= ERROR_SHOWN else text[: ERROR_SHOWN - 1].rstrip() + "…"
    return format_html('<span class="jd-error" title="{}">{}</span>', job.error_message, shown)


def _labels_of(job: Job) -> dict[str, str]:
    """The worker labels for a job (the list attaches the page's at once)."""
    if not hasattr(job, "worker_labels"):
        job.worker_labels = worker_labels.labels([job])  # type: ignore[attr-defined]
    return job.worker_labels  # type: ignore[attr-defined]


def _readable(text: str, known: dict[str, str]) -> str:
    """Text with each RQ worker name it holds shown as host:pid, the name in a tooltip."""
    return format_html_join(
        "",
        "{}",
        (
            (format_html('<span class="jd-worker" title="RQ worker {}">{}</span>', name, piece) if name else piece,)
            for piece, name in worker_labels.spans(text, known)
        ),
    )


def _job_links(jobs) -> str:
    rows = [(reverse("admin:jobs_job_change", args=[j.id]), str(j.id)[:8], j.type, _badge(j.status)) for j in jobs]
    return format_html_join(" ", '<a href="{}">{} {}</a> {}', rows) if rows else "—"


def _attach_estimates(jobs) -> None:
    """One line walk for the page's unfinished jobs, not one per row."""
    waiting = [job for job in jobs if job.status not in FINAL_STATUSES]
    if waiting:
        # The estimates also cover what the page's waiting jobs wait for (their pending
        # dependencies), which may be on another page: each job takes its own.
        guesses = estimates.estimate(waiting)
        for job in waiting:
            job.estimate = guesses[job.id]


def _attach_worker_labels(jobs) -> None:
    """Error messages name workers (a lost job's): one lookup for the page's rows."""
    with_error = [job for job in jobs if job.status in WITH_ERROR_MESSAGE and job.error_message]
    known = worker_labels.labels(with_error) if with_error else {}
    for job in jobs:
        job.worker_labels = known


@admin.register(JobEvent)
class JobEventAdmin(InputChecked, admin.ModelAdmin):
    list_display = ["created_at", "job", "kind", "from_status", "to_status", "who_shown", "message_shown"]
    list_filter = ["kind", "to_status"]
    search_fields = ["=job__id", "message"]
    list_select_related = ["job", "actor"]
    paginator = CappedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the timeline is the audit trail

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        events = list(changelist.result_list)
        known = worker_labels.labels({event.job for event in events}) if events else {}
        for event in events:
            event.worker_labels = known
        return changelist

    @admin.display(description="who")
    def who_shown(self, event: JobEvent) -> str:
        return _readable(event.who, getattr(event, "worker_labels", {}))

    @admin.display(description="message")
    def message_shown(self, event: JobEvent) -> str:
        return _readable(event.message, getattr(event, "worker_labels", {}))
