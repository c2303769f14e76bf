from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from apikit.serializers import ChoiceField, FieldsBuiltOnce, NoEmptyValues, RejectUnknownFields
from jobs.core.errors import DependencyCycle, SubmitError
from jobs.core.models import DependencyFailure, ErrorCategory, Job, JobEvent, Priority
from jobs.core.submit import MAX_ATTEMPTS_LIMIT, MAX_SIZE, JobSpec
from jobs.insight import estimates

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class JobErrorSerializer(serializers.Serializer):
    category = serializers.ChoiceField(choices=ErrorCategory.choices, allow_null=True)
    message = serializers.CharField()
    recovery_actions = serializers.ListField(child=serializers.CharField())
    details = serializers.CharField(help_text="traceback")


def estimate_page(context: dict, jobs: list[Job]) -> None:
    """Estimates for a whole page at once (one line walk, no query per row), kept in the
    serializer context where ``JobSerializer`` looks first."""
    known = context.setdefault("estimates", {})
    missing = [j for j in jobs if j.id not in known]
    if missing:
        known.update(estimates.estimate(missing))


class JobListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        jobs = list(data.all() if hasattr(data, "all") else data)
        # The stubs type the context as a read-only Mapping; it is the serializers' shared dict.
        estimate_page(self.context, jobs)  # type: ignore[arg-type]
        self.context["in_list"] = True  # type: ignore[index]  # big fields are summarised: a page stays small
        return super().to_representation(jobs)


# In lists, a field bigger than this (as JSON) is replaced by a summary; the job's own
# page has it whole. 40 rows of 2 MB payloads made a 192 MB page before.
LIST_FIELD_BYTES = 4096
SUMMARISED_FIELDS = ("payload", "result", "progress_details")


def summarise_for_list(data: dict) -> dict:
    """Replace big fields of one serialized job with ``{"truncated": true, "bytes": N}``
    and name them in ``truncated``; cut a long traceback."""
    cut = []
    for name in SUMMARISED_FIELDS:
        size = len(json.dumps(data.get(name), separators=(",", ":"), ensure_ascii=False).encode())
        if size > LIST_FIELD_BYTES:
            data[name] = {"truncated": True, "bytes": size}
            cut.append(name)
    error = data.get("error")
    if error and len(error.get("details") or "") > LIST_FIELD_BYTES:
        error["details"] = error["details"][-LIST_FIELD_BYTES:]  # a traceback's end says the most
        cut.append("error.details")
    data["truncated"] = cut
    return data


class JobSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """A job with its current estimate (``estimates`` in the context, else computed)."""

    owner: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="null for system jobs (crons, maintenance)"
    )
    depends_on: serializers.PrimaryKeyRelatedField[Job] = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    error = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    estimated_start_at = serializers.SerializerMethodField()
    estimated_finish_at = serializers.SerializerMethodField()
    estimated_start_range = serializers.SerializerMethodField(
        help_text="[low, high]: the start falls in this range 8 times in 10 (calibrated); null without an estimate"
    )
    estimated_finish_range = serializers.SerializerMethodField(help_text="[low, high]: the finish's 80 % range")
    eta_cold = serializers.SerializerMethodField(
        help_text="the estimate leans on a guess: a job type without history is in play (its range is wide)"
    )
    first_estimated_start_range = serializers.SerializerMethodField(
        help_text="the 80 % range given at submit, to judge it against started_at"
    )
    eta_warning = serializers.SerializerMethodField(help_text="why there is no estimate, e.g. no live worker")
    paused = serializers.SerializerMethodField(
        help_text="an operator paused its queue or type: no estimate until resumed"
    )
    hold = serializers.CharField(
        read_only=True,
        help_text="why a queued job is parked off its queue (queue_paused, type_paused, concurrency, rate); '' if not",
    )
    worker = serializers.SerializerMethodField(
        help_text="the process running (or last running) the job as host:pid, beside RQ's worker_name; '' if none"
    )
    lease_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="while it runs: until when its worker's lease holds (renewed every few seconds); null otherwise",
    )
    truncated = serializers.SerializerMethodField(
        help_text='in lists: the fields replaced by {"truncated": true, "bytes": N} (the job itself has them whole)'
    )

    class Meta:
        model = Job
        fields = [
            "id", "type", "status", "priority", "heavy", "owner", "payload", "result", "error",
            "attempts", "max_attempts", "timeout", "idempotency_key", "depends_on", "on_dependency_failure", "batch",
            "progress", "stage", "progress_details", "seq", "worker_name", "worker", "lease_expires_at",
            "created_at", "enqueued_at", "scheduled_for", "started_at", "finished_at", "duration_seconds",
            "estimated_start_at", "estimated_finish_at", "estimated_start_range", "estimated_finish_range",
            "eta_cold", "eta_warning", "paused", "hold", "size",
            "first_estimated_start_at", "first_estimated_finish_at", "first_estimated_start_range",
            "eta_error_seconds", "truncated",
        ]  # fmt: skip
        read_only_fields = fields
        list_serializer_class = JobListSerializer

    def to_representation(self, job: Job) -> dict:
        data = super().to_representation(job)
        if isinstance(self.context, dict) and self.context.get("in_list"):
            return summarise_for_list(data)
        return data

    def get_worker(self, job: Job) -> str:
        return f"{job.runner_host}:{job.runner_pid}" if job.worker_name and job.runner_host and job.runner_pid else ""

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_truncated(self, job: Job) -> list[str]:
        return []

    def _estimate(self, job: Job) -> estimates.Estimate:
        known = self.context.setdefault("estimates", {}) if isinstance(self.context, dict) else {}
        if job.id not in known:
            known[job.id] = estimates.for_job(job)
        return known[job.id]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_estimated_start_at(self, job: Job) -> str | None:
        return _as_datetime(self._estimate(job).start_at)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_estimated_finish_at(self, job: Job) -> str | None:
        return _as_datetime(self._estimate(job).finish_at)

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField(), allow_null=True))
    def get_estimated_start_range(self, job: Job) -> list[str] | None:
        return _as_range(self._estimate(job).start_range)

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField(), allow_null=True))
    def get_estimated_finish_range(self, job: Job) -> list[str] | None:
        return _as_range(self._estimate(job).finish_range)

    def get_eta_cold(self, job: Job) -> bool:
        return self._estimate(job).cold

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField(), allow_null=True))
    def get_first_estimated_start_range(self, job: Job) -> list[str] | None:
        low, high = job.first_estimated_start_low, job.first_estimated_start_high
        return _as_range((low, high) if low and high else None)

    def get_eta_warning(self, job: Job) -> str:
        return self._estimate(job).warning

    def get_paused(self, job: Job) -> bool:
        return self._estimate(job).paused

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        if not job.error_message and not job.error_category:
            return None
        return {
            "category": job.error_category or None,
            "message": job.error_message,
            "recovery_actions": job.recovery_actions,
            "details": job.error_details,
        }


def _as_datetime(value) -> str | None:
    return None if value is None else serializers.DateTimeField().to_representation(value)


def _as_range(value) -> list[str] | None:
    return None if value is None else [serializers.DateTimeField().to_representation(t) for t in value]


class JobEventSerializer(serializers.ModelSerializer):
    who = serializers.CharField(read_only=True)

    class Meta:
        model = JobEvent
        fields = ["seq", "kind", "from_status", "to_status", "who", "message", "details", "created_at"]
        read_only_fields = fields


class JobLogLineSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(help_text="the attempt (run) that logged it")
    n = serializers.IntegerField(help_text="the line's number in its run, from 1; dropped lines keep theirs")
    time = serializers.DateTimeField()
    level = serializers.CharField(help_text="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logger = serializers.CharField(help_text='the logger\'s name; "jobs.handler.<type>" for ctx.log lines')
    message = serializers.CharField(help_text="cut to JOB_LOG_LINE_CHARS; a traceback follows its message")


class JobLogRunSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    started_at = serializers.DateTimeField(help_text="when the run's first lines were written")
    updated_at = serializers.DateTimeField(help_text="when its latest lines were written")
    total = serializers.IntegerField(help_text="lines the run emitted")
    kept = serializers.IntegerField(help_text="lines kept: the last JOB_LOG_LINES")
    dropped = serializers.IntegerField(help_text="the oldest lines not kept")


class JobLogsSerializer(serializers.Serializer):
    """``GET /api/jobs/{id}/logs/``: the job's log lines, oldest run first."""

    job_id = serializers.UUIDField()
    status = serializers.CharField(help_text="the job's status now: lines may still come while it is active")
    dropped = serializers.IntegerField(help_text="lines dropped over all the runs shown")
    runs = JobLogRunSerializer(many=True)
    lines = JobLogLineSerializer(many=True)


class JobLogsQuerySerializer(NoEmptyValues, serializers.Serializer):
    attempt = serializers.IntegerField(min_value=1, required=False, help_text="only this attempt's lines")


class JobSubmitSerializer(FieldsBuiltOnce, RejectUnknownFields, serializers.Serializer):
    type = serializers.CharField(max_length=100)
    payload = serializers.JSONField(required=False, default=dict)
    priority = ChoiceField(choices=Priority.choices, required=False)
    max_attempts = serializers.IntegerField(min_value=1, max_value=MAX_ATTEMPTS_LIMIT, required=False)
    depends_on = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=100)
    run_at = serializers.DateTimeField(required=False)
    heavy = serializers.BooleanField(required=False)
    idempotency_key = serializers.CharField(max_length=200, required=False, help_text="or the Idempotency-Key header")
    size = serializers.FloatField(
        min_value=0, max_value=MAX_SIZE, required=False,
        help_text="the job's work in its type's unit (e.g. bytes), for its ETA; else the type's own sizing says",
    )  # fmt: skip
    on_dependency_failure = ChoiceField(
        choices=DependencyFailure.choices,
        required=False,
        help_text="cancel (default): a failed dependency cancels it; run: it runs when all are final, sees it",
    )

    def to_spec(self, default_key: str | None = None) -> JobSpec:
        data = self.validated_data
        sent = data.get("idempotency_key")
        if sent and default_key and sent != default_key:
            raise serializers.ValidationError(
                {
                    "idempotency_key": [
                        f"The Idempotency-Key header says {default_key!r} and this field {sent!r}: send one "
                        "key, in either place (or the same in both)."
                    ]
                }
            )
        return spec_from(data, default_key)


def spec_from(data: dict, default_key: str | None) -> JobSpec:
    return JobSpec(
        type=data["type"],
        payload=_object_or_empty(data.get("payload")),
        priority=data.get("priority"),
        max_attempts=data.get("max_attempts"),
        depends_on=[str(d) for d in data.get("depends_on", [])] + list(data.get("depends_on_refs", [])),
        run_at=data.get("run_at"),
        heavy=data.get("heavy"),
        idempotency_key=data.get("idempotency_key") or default_key,
        ref=data.get("ref"),
        size=data.get("size"),
        on_dependency_failure=data.get("on_dependency_failure"),
    )


def _object_or_empty(payload):
    """No payload (absent, or null) is an empty one; any other value goes to the type's
    check as sent — ``[]``, ``0``, ``false`` or ``""`` is refused there, not read as {}."""
    return {} if payload is None else payload


def no_key_for_the_whole(headers) -> None:
    """A request of many jobs has no one key: each job's ``idempotency_key`` is its own.
    A header sent anyway would be ignored without a word, and the client believe its
    retry safe."""
    if headers.get("Idempotency-Key") is not None:
        raise SubmitError(
            "An Idempotency-Key header applies to a single job's submit, not to a request of many.",
            field="Idempotency-Key",
            hint="Give each job its own idempotency_key in the body instead.",
        )


@contextlib.contextmanager
def refs_named_as_sent() -> Iterator[None]:
    """Around a submit of specs made by ``spec_from``: a dependency cycle, which only refs
    can close, names ``depends_on_refs`` — the field the client sent them in."""
    try:
        yield
    except DependencyCycle as cycle:
        cycle.field = f"{cycle.field}_refs" if cycle.field else None
        raise


class BulkItemsSerializer(serializers.ListSerializer):
    def validate(self, attrs: list[dict]) -> list[dict]:
        """A ref no item of the request has is named where it was sent (the submit sees
        ``depends_on_refs`` and ``depends_on`` as one list). A job id there is let
        through, as it always was: the submit looks it up."""
        refs = {item["ref"] for item in attrs if item.get("ref")}
        unknown = {}
        for index, item in enumerate(attrs):
            missing = [r for r in item.get("depends_on_refs", ()) if r not in refs and not _is_uuid(r)]
            if missing:
                messages = [f"{r!r} is not the ref of a job of this request." for r in missing]
                unknown[index] = {"depends_on_refs": messages}
        if unknown:
            raise serializers.ValidationError(unknown)  # type: ignore[arg-type]  # by position, as DRF keys a list's
        return attrs


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class BulkItemSerializer(JobSubmitSerializer):
    ref = serializers.CharField(max_length=100, required=False, help_text="a name other items can depend on")
    depends_on_refs = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)

    class Meta:
        list_serializer_class = BulkItemsSerializer

    def run_validation(self, data=serializers.empty):
        if data is None:  # DRF's "may not be null" would name the item as a list's position ("0: …")
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ["A job, not null: send an object."]})
        return super().run_validation(data)


class BulkSubmitSerializer(RejectUnknownFields, serializers.Serializer):
    # many=True makes a ListSerializer, which takes max_length (the stubs know only the child's arguments).
    jobs = BulkItemSerializer(many=True, allow_empty=False, max_length=5000)  # type: ignore[call-arg]

    def to_specs(self) -> list[JobSpec]:
        return [spec_from(item, None) for item in self.validated_data["jobs"]]
