"""The console's own pages beside the job list: the live dashboard, its data,
requeue of every dead letter matching the list's filter (after a confirmation that
says how many), and the action buttons of a job's page. Thin: each calls a service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters, ModelAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from jobs.core import actions, registry
from jobs.core.errors import ActionRefused, JobNotFound
from jobs.core.models import Job, Status
from jobs.insight import dashboard

REQUEUE_AT_ONCE = 1000  # dead letters requeued per confirmation; the page says so when there are more
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
    done, refused = 0, []
    for job_id in job_ids:
        try:
            service(job_id, actor=request.user)
            done += 1
        except ActionRefused as why:
            refused.append(str(why))
        except JobNotFound:
            refused.append(f"Job {job_id} is gone (deleted by the retention cron meanwhile).")
    if done:
        messages.success(request, f"{verb} {done} {noun}.")
    for reason in refused[:20]:
        messages.warning(request, reason)
    if len(refused) > 20:
        messages.warning(request, f"…and {len(refused) - 20} more refused.")


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
                         system_types=system_types()),
        )  # fmt: skip


class DashboardDataView(_ConsoleView):
    def get(self, request):
        return JsonResponse(dashboard.cached_overview(), encoder=DjangoJSONEncoder)


class RequeueMatchingView(_ConsoleView):
    """Every dead letter the job list's current filter matches (GET confirms, POST acts)."""

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except (IncorrectLookupParameters, ValidationError):  # the list shows its error notice
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist") + "?e=1")

    def matching(self, request):
        changelist = self.admin.get_changelist_instance(request)
        return changelist.get_queryset(request).filter(status=Status.DEAD_LETTER)

    def get(self, request):
        count = self.matching(request).order_by().count()
        return TemplateResponse(
            request, "admin/jobs/job/requeue_matching.html",
            self.context(request, title="Requeue dead letters", count=count, at_once=min(count, REQUEUE_AT_ONCE),
                         query=request.GET.urlencode()),
        )  # fmt: skip

    def post(self, request):
        if not self.admin.has_change_permission(request):
            raise PermissionDenied
        ids = list(self.matching(request).order_by("finished_at").values_list("id", flat=True)[:REQUEUE_AT_ONCE])
        act_on_each(request, ids, actions.requeue, "Requeued", noun="dead letter(s)")
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
            messages.success(request, f"{done} job {job.id}.")
        except ActionRefused as why:
            messages.warning(request, str(why))
        except JobNotFound:
            messages.warning(request, f"Job {job.id} is gone (deleted by the retention cron meanwhile).")
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist"))
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.id]))
