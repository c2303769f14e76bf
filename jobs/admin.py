"""The operations console edge: read any job, act through the same services as the API."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from jobs import actions
from jobs.errors import ActionRefused
from jobs.models import Job, JobEvent


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "seq", "kind", "from_status", "to_status", "who", "message"]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _run_action(modeladmin, request, queryset, service, verb: str) -> None:
    done, refused = 0, []
    for job_id in queryset.values_list("id", flat=True):
        try:
            service(job_id, actor=request.user)
            done += 1
        except ActionRefused as why:
            refused.append(str(why))
    if done:
        modeladmin.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
    for why in refused[:20]:
        modeladmin.message_user(request, why, messages.WARNING)


@admin.action(description="Requeue selected jobs (new round of attempts)", permissions=["change"])
def requeue_jobs(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, actions.requeue, "Requeued")


@admin.action(description="Cancel selected jobs", permissions=["change"])
def cancel_jobs(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, actions.cancel, "Canceled")


@admin.action(description="Promote selected jobs to immediate", permissions=["change"])
def promote_jobs(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, actions.promote, "Promoted")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "status", "priority", "progress", "attempts", "owner", "created_at", "finished_at"]
    list_filter = ["status", "priority", "type", "error_category", "heavy"]
    search_fields = ["=id", "type", "idempotency_key", "error_message"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    inlines = [JobEventInline]
    actions = [requeue_jobs, cancel_jobs, promote_jobs]
    readonly_fields = [
        "id", "type", "status", "priority", "heavy", "owner", "attempts", "max_attempts", "timeout",
        "idempotency_key", "pretty_payload", "pretty_result", "error_category", "error_message",
        "recovery_actions", "error_details", "progress", "stage", "seq", "rq_job_id", "worker_name",
        "created_at", "enqueued_at", "scheduled_for", "started_at", "finished_at",
        "first_estimated_start_at", "first_estimated_finish_at", "eta_error_seconds", "dependencies",
    ]  # fmt: skip
    exclude = ["payload", "result", "depends_on", "progress_details"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs enter through the submit service, never as raw rows

    @admin.display(description="payload")
    def pretty_payload(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(job.payload, indent=2, sort_keys=True))

    @admin.display(description="result")
    def pretty_result(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(job.result, indent=2, sort_keys=True))

    @admin.display(description="depends on")
    def dependencies(self, job: Job) -> str:
        return ", ".join(f"{d.id} ({d.status})" for d in job.depends_on.all()) or "—"


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "job", "kind", "from_status", "to_status", "who", "message"]
    list_filter = ["kind", "to_status"]
    search_fields = ["=job__id", "message"]
    list_select_related = ["job", "actor"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
