"""The console's batches: a list (state, progress bar, counts) and a page (counts, a
live progress bar, its jobs, its callbacks, *Cancel…* and *Retry failed…* after a
confirmation that says how many jobs they touch). Thin: each act is a call to
``jobs.core.batches``, the same service as ``/api/batches/``."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from jobs.console.input_checks import InputChecked
from jobs.core import batches
from jobs.core.errors import ActionRefused
from jobs.core.models import BROKEN_DEPENDENCY_STATUSES, PENDING_STATUSES, Batch, Job, Status

# The batch's act, what it touches and how the confirmation says it.
ACTS = {
    "cancel": ("Cancel the batch", PENDING_STATUSES, "waiting job(s) will be canceled; running ones finish"),
    "retry-failed": ("Retry failed jobs", BROKEN_DEPENDENCY_STATUSES, "failed, dead-lettered or canceled job(s) "
                     "will be requeued"),
}  # fmt: skip


def state_badge(state: str) -> str:
    colour = {"complete": "complete", "finished": "failed", "running": "active", "open": "queued"}.get(state, state)
    return format_html('<span class="jd-status jd-{}">{}</span>', colour, state)


def progress_bar(percent: float, state: str) -> str:
    fill = {"complete": "complete", "finished": "failed"}.get(state, "active")
    shown = f"{percent:g}"
    return format_html(
        '<span class="jd-bar"><span class="jd-fill jd-fill-{}" style="width:{}%"></span></span>'
        '<span class="jd-pct">{}%</span>',
        fill, shown, shown,
    )  # fmt: skip


def counts_text(measured: batches.Progress) -> str:
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in measured.counts.items() if n]
    return f"{measured.total} job(s)" + (": " + ", ".join(parts) if parts else "")


@admin.register(Batch)
class BatchAdmin(InputChecked, admin.ModelAdmin):
    list_display = ["short_id", "description", "owner", "state_shown", "progress_shown", "counts_shown", "created_at"]
    list_filter = ["owner"]
    search_fields = ["description"]
    list_select_related = ["owner"]
    list_per_page = 50
    date_hierarchy = "created_at"

    class Media:
        css = {"all": ["jobs/console.css"]}
        js = ["jobs/console.js"]

    def has_add_permission(self, request) -> bool:
        return False  # batches come through the submit service (code, the API)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        own = [
            path("<uuid:batch_id>/act/<str:verb>/", self.admin_site.admin_view(self.act_view), name="jobs_batch_act"),
        ]
        return own + super().get_urls()

    def _measured(self, batch: Batch) -> batches.Progress:
        cache = getattr(self, "_progress_cache", None)
        if cache is None or cache[0] is not batch:
            cache = (batch, batches.batch_progress(batch.pk))
            self._progress_cache = cache
        return cache[1]

    @admin.display(description="id")
    def short_id(self, batch: Batch) -> str:
        return str(batch.pk)[:8]

    @admin.display(description="state")
    def state_shown(self, batch: Batch) -> str:
        return format_html(
            '<span data-batch="{}" data-field="state">{}</span>', batch.pk,
            state_badge(batches.state(batch, self._measured(batch))),
        )  # fmt: skip

    @admin.display(description="progress")
    def progress_shown(self, batch: Batch) -> str:
        measured = self._measured(batch)
        return format_html(
            '<span data-batch="{}" data-field="progress">{}</span>', batch.pk,
            progress_bar(measured.percent, batches.state(batch, measured)),
        )  # fmt: skip

    @admin.display(description="jobs")
    def counts_shown(self, batch: Batch) -> str:
        return format_html('<span data-batch="{}" data-field="counts">{}</span>', batch.pk,
                           counts_text(self._measured(batch)))  # fmt: skip

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """The batch's page: read-only, live; acts are the buttons (POST elsewhere)."""
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"], "Batches change through their buttons, not this form.")
        if object_id is None:
            raise PermissionDenied  # no "add" page: batches are made by code and the API
        batch = self.get_object(request, object_id)  # None for an id that is not one (not a 500)
        if batch is None:
            raise Http404("No such batch.")
        if not self.has_view_or_change_permission(request, batch):
            raise PermissionDenied
        measured = batches.batch_progress(batch.pk)
        state = batches.state(batch, measured)
        callbacks = [
            (label, name, job_id, job_id and Job.objects.filter(pk=job_id).values_list("status", flat=True).first())
            for label, name, job_id in (
                ("on_complete", batch.on_complete, batch.complete_job),
                ("on_success", batch.on_success, batch.success_job),
            )
            if name
        ]
        jobs_url = reverse("admin:jobs_job_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Batch {batch.description or str(batch.pk)[:8]}",
            "opts": self.model._meta,
            "batch": batch,
            "state": state,
            "state_badge": state_badge(state),
            "bar": progress_bar(measured.percent, state),
            "counts": [(status, n) for status, n in measured.counts.items() if n],
            "total": measured.total,
            "callbacks": callbacks,
            "jobs_url": f"{jobs_url}?batch={batch.pk}&system=all",
            "failed_url": f"{jobs_url}?batch={batch.pk}&system=all&status__exact={Status.FAILED}",
            "can_act": self.has_change_permission(request, batch),
            "acts": {verb: self._touching(batch, verb) for verb in ACTS},
        }
        return TemplateResponse(request, "admin/jobs/batch/page.html", context)

    def _touching(self, batch: Batch, verb: str) -> int:
        return Job.objects.filter(batch=batch, status__in=ACTS[verb][1]).count()

    def act_view(self, request, batch_id, verb: str):
        """GET: the confirmation (how many jobs it touches); POST: do it."""
        batch = get_object_or_404(Batch, pk=batch_id)
        if verb not in ACTS:
            raise PermissionDenied
        if not self.has_change_permission(request, batch):
            raise PermissionDenied
        title, _, says = ACTS[verb]
        if request.method == "POST":
            if verb == "cancel":
                try:
                    count = batches.cancel(batch.pk, actor=request.user)
                except ActionRefused as refused:  # it finished meanwhile
                    messages.error(request, f"{refused} {refused.hint}")
                else:
                    messages.success(request, f"Canceled {count} waiting job(s) of the batch; it is closed.")
            else:
                count = batches.retry_failed(batch.pk, actor=request.user)
                messages.success(request, f"Requeued {count} job(s) of the batch.")
            return HttpResponseRedirect(reverse("admin:jobs_batch_change", args=[batch.pk]))
        return TemplateResponse(
            request,
            "admin/jobs/batch/confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{title}?",
                "opts": self.model._meta,
                "batch": batch,
                "count": self._touching(batch, verb),
                "says": says,
                "verb": verb,
            },
        )
