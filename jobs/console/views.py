"""The console's own pages beside the job list: the live dashboard, its data,
requeue of every dead letter (or retry of every failed job) matching the list's filter (after a confirmation that
says how many), the action buttons of a job's page, and the flow-control page (pause
and resume queues and types, their limits, the levers' audit trail). Thin: each calls
a service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters, ModelAdmin
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from jobs.console.input_checks import BAD_LOOKUP
from jobs.core import access, actions, flow, registry
from jobs.core.errors import ActionRefused, JobNotFound, SubmitError
from jobs.core.models import FlowControl, Hold, Job, Schedule, Status
from jobs.insight import dashboard

REQUEUE_AT_ONCE = 1000  # dead letters (or failed jobs) requeued per confirmation; the page says so when there are more
# The job page's buttons, by the move each makes: offered in the statuses the transitions
# table allows (the lifecycle still checks when pressed).
MOVE_OF = {"requeue": "requeue", "run-now": "run_now", "promote": "promote", "cancel": "cancel"}
ACTS = {"requeue": (actions.requeue, "Requeued"), "cancel": (actions.cancel, "Canceled"),
        "promote": (actions.promote, "Promoted"), "run-now": (actions.run_now, "Queued now")}  # fmt: skip


def system_types() -> list[str]:
    """Internal job types (crons, maintenance): their routine runs are noise to a person."""
    return sorted(name for name, job_type in registry.all_types().items() if not job_type.public)


def act_on_each(request, job_ids, service, verb: str, *, noun: str = "job(s)") -> None:
    """Apply one service to each job as the operator; a refusal is a message naming the
    job, never a 500. (Admin actions and the console's bulk requeue share it.)"""
    done, refused, acted = 0, [], []
    for job_id in job_ids:
        try:
            service(job_id, actor=request.user)
            done += 1
            acted.append(job_id)
        except ActionRefused as why:
            refused.append(str(why))
        except JobNotFound:
            refused.append(f"Job {job_id} is gone (deleted by the retention cron meanwhile).")
    if done:
        record(request, acted, verb)
        messages.success(request, f"{verb} {done} {noun}.")
    for reason in refused[:20]:
        messages.warning(request, reason)
    if len(refused) > 20:
        messages.warning(request, f"…and {len(refused) - 20} more refused.")


def record(request, job_ids, verb: str) -> None:
    """The admin index's "Recent actions" (Django's LogEntry) lists the console's acts:
    one entry per job acted on, beside the job's own timeline (the full audit trail)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=Job.objects.filter(pk__in=list(job_ids)), action_flag=CHANGE,
        change_message=f"{verb} from the console.",
    )  # fmt: skip


class _ConsoleView(View):
    # The JobAdmin, always given by as_view(admin=…); the None only lets as_view accept it.
    admin: ModelAdmin[Job] = None  # type: ignore[assignment]
    needs = "view"

    def dispatch(self, request, *args, **kwargs):
        allowed = self.admin.has_change_permission if self.needs == "change" else self.admin.has_view_permission
        if not allowed(request):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def context(self, request, **extra) -> dict:
        return {**self.admin.admin_site.each_context(request), "opts": Job._meta,
                "can_act": self.admin.has_change_permission(request), **extra}  # fmt: skip


class DashboardView(_ConsoleView):
    def get(self, request):
        return TemplateResponse(
            request, "admin/jobs/dashboard.html",
            self.context(request, title="Operations dashboard", overview=dashboard.cached_overview(),
                         system_types=system_types(), **flow_rights(request.user),
                         schedules_sees=access.sees_all(request.user, Schedule)),
        )  # fmt: skip


class DashboardDataView(_ConsoleView):
    def get(self, request):
        return JsonResponse(dashboard.cached_overview(), encoder=DjangoJSONEncoder)


class RowCellsView(_ConsoleView):
    """The cells a live event changes that the browser cannot draw by itself (the ETA or
    duration, tries, the error), rendered as a reload renders them: ``?id=<job id>``
    repeated, at most ROW_CELLS jobs; ``{"cells": {id: {field: html}}}``."""

    def get(self, request):
        ids = request.GET.getlist("id")[:ROW_CELLS]
        return JsonResponse({"cells": self.admin.row_cells(request, ids)})  # type: ignore[attr-defined]


ROW_CELLS = 100  # jobs per request: a list page shows 50


class RequeueMatchingView(_ConsoleView):
    """Every dead letter (or, as ``status=Status.FAILED``, every failed job) the job list's
    current filter matches, through the requeue service: GET says how many and confirms,
    POST requeues at most REQUEUE_AT_ONCE, those that finished longest ago first."""

    status: str = Status.DEAD_LETTER
    WORDS: dict[str, tuple[str, str, str]] = {  # the page's title, what it counts, what the message says
        Status.DEAD_LETTER: ("Requeue dead letters", "dead-lettered job", "dead letter(s)"),
        Status.FAILED: ("Retry failed jobs", "failed job", "failed job(s)"),
    }

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except (IncorrectLookupParameters, *BAD_LOOKUP):  # the list shows its error notice
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist") + "?e=1")

    def matching(self, request):
        changelist = self.admin.get_changelist_instance(request)
        return changelist.get_queryset(request).filter(status=self.status)

    def get(self, request):
        count = self.matching(request).order_by().count()
        title, noun, _ = self.WORDS[self.status]
        return TemplateResponse(
            request, "admin/jobs/job/requeue_matching.html",
            self.context(request, title=title, count=count, at_once=min(count, REQUEUE_AT_ONCE), noun=noun,
                         status=self.status, query=request.GET.urlencode()),
        )  # fmt: skip

    def post(self, request):
        if not self.admin.has_change_permission(request):
            raise PermissionDenied
        ids = list(self.matching(request).order_by("finished_at").values_list("id", flat=True)[:REQUEUE_AT_ONCE])
        act_on_each(request, ids, actions.requeue, "Requeued", noun=self.WORDS[self.status][2])
        query = request.GET.urlencode()
        return HttpResponseRedirect(reverse("admin:jobs_job_changelist") + (f"?{query}" if query else ""))


class ActView(_ConsoleView):
    """The requeue / cancel / promote buttons on a job's page."""

    needs = "change"

    def post(self, request, job_id, verb: str):
        if verb not in ACTS:
            raise PermissionDenied
        job = get_object_or_404(Job, pk=job_id)
        service, done = ACTS[verb]
        try:
            service(job.id, actor=request.user)
            record(request, [job.id], done)
            messages.success(request, f"{done} job {job.id}.")
        except ActionRefused as why:
            messages.warning(request, str(why))
        except JobNotFound:
            messages.warning(request, f"Job {job.id} is gone (deleted by the retention cron meanwhile).")
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist"))
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.id]))


# --- Flow control ------------------------------------------------------------------

QUEUE, TYPE = FlowControl.Kind.QUEUE, FlowControl.Kind.TYPE
FLOW_VERBS: dict[str, tuple[str, ...]] = {QUEUE: ("pause", "resume"), TYPE: ("pause", "resume", "limits", "reset")}
REASON_MAX = 500  # as the API's reason field
CHANGES_SHOWN = 50  # the page's audit trail: the latest changes of every lever


def flow_rights(user) -> dict[str, bool]:
    """The levers have their own permissions: seeing jobs does not imply moving queues."""
    return {"flow_sees": access.sees_all(user, FlowControl), "flow_acts": access.acts_on_all(user, FlowControl)}


def _changed(change) -> list[tuple[str, object, object]]:
    """The audit row's before → after, only what the change moved."""
    keys = [key for key in flow.STATE_FIELDS if change.before.get(key) != change.after.get(key)]
    return [(key, _shown(key, change.before.get(key)), _shown(key, change.after.get(key))) for key in keys]


def _shown(key: str, value: object) -> object:
    # An operator's empty limit means none (not the code's); an empty reason, nothing said.
    if value in (None, ""):
        return "no limit" if key in ("concurrency", "rate") else "—"
    return value


class FlowView(_ConsoleView):
    """Every queue and job type with its levers, the buttons to move them (for those who
    may), and the latest changes with who made them and why."""

    def dispatch(self, request, *args, **kwargs):
        if not flow_rights(request.user)["flow_sees"]:
            raise PermissionDenied
        return View.dispatch(self, request, *args, **kwargs)  # the levers' permission, not the jobs'

    def get(self, request):
        changes = [(change, _changed(change)) for change in flow.latest_changes(CHANGES_SHOWN)]
        types = flow.describe_types()
        for described in types:  # the parked jobs by why, the reasons in words
            described["held_shown"] = [(n, Hold(why).label.lower()) for why, n in described["held"].items() if n]
        return TemplateResponse(
            request, "admin/jobs/flow.html",
            self.context(request, title="Flow control", queues=flow.describe_queues(), types=types,
                         changes=changes, schedules_sees=access.sees_all(request.user, Schedule),
                         **flow_rights(request.user)),
        )  # fmt: skip


class FlowActView(_ConsoleView):
    """The flow page's (and the dashboard's) buttons: POST only, the change permission on
    the levers, the operator recorded in the audit trail; a bad value is a message naming
    the field and how to write it, never an error page."""

    def dispatch(self, request, *args, **kwargs):
        if not flow_rights(request.user)["flow_acts"]:
            raise PermissionDenied
        return View.dispatch(self, request, *args, **kwargs)

    def post(self, request, kind: str, name: str, verb: str):
        if verb not in FLOW_VERBS.get(kind, ()):
            raise Http404
        reason = request.POST.get("reason", "").strip()[:REASON_MAX]
        by = {"actor": request.user, "reason": reason}
        try:
            if verb == "pause":
                flow.pause(kind, name, **by)
                messages.success(request, f"Paused the {kind} {name}" + (f": {reason}" if reason else "."))
            elif verb == "resume":
                flow.resume(kind, name, **by)
                messages.success(request, f"Resumed the {kind} {name}: what it held goes back to its queue.")
            elif verb == "reset":
                flow.reset_limits(name, **by)
                messages.success(request, f"The limits of {name} are the code's again.")
            else:
                self.set_limits(request, name, by)
        except SubmitError as error:  # InvalidInput (a bad value), or an unknown queue or type
            field = f"{error.field}: " if error.field else ""
            messages.error(request, f"{field}{error.message} {error.hint}".strip())
        return HttpResponseRedirect(self.back(request, kind, name))

    def set_limits(self, request, name: str, by: dict) -> None:
        """Only what the operator changed becomes theirs: a value left as it was keeps
        coming from where it came from (the code, until then)."""
        text = request.POST.get("concurrency", "").strip()
        try:
            concurrency: int | str | None = int(text) if text else None  # blank: no limit
        except ValueError:
            concurrency = text  # not a whole number: the service refuses it, naming its field
        wanted = {"concurrency": concurrency, "rate": request.POST.get("rate", "").strip()}
        now = flow.describe_type(name)
        applies = {"concurrency": now["concurrency"], "rate": now["rate"] or ""}
        changed = {key: value for key, value in wanted.items() if value != applies[key]}
        if not changed:
            messages.info(request, f"The limits of {name} are already so: nothing changed.")
            return
        flow.set_limits(name, **changed, **by)
        shown = ", ".join(f"{key} {value if value not in (None, '') else 'no limit'}" for key, value in changed.items())
        messages.success(request, f"Set the limits of {name}: {shown}.")

    def back(self, request, kind: str, name: str) -> str:
        """Where the button was (the dashboard, or the flow page at that row)."""
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
            return target
        return reverse("admin:jobs_flow") + f"#{kind}-{name}"
