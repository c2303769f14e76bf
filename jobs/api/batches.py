"""``/api/batches/``: batches of jobs with one progress and callbacks (jobs.core.batches).

Thin: validate, call the batch service, translate. Jobs inline go through the same
validation and bulk-submit path as ``/api/jobs/bulk/``. Owners see their batches;
staff by their permissions on batches (jobs.core.access)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apikit.serializers import RejectUnknownFields, StrictBooleanField, StrictCharField
from apikit.views import Conventions
from jobs.api.permissions import OwnedRows
from jobs.api.serializers import BulkItemSerializer, no_key_for_the_whole, refs_named_as_sent, spec_from
from jobs.api.traces import ContinuesCallersTrace
from jobs.core import access, batches
from jobs.core.models import Batch
from jobs.insight import estimates

MAX_INLINE_JOBS = 5000


class BatchCallbackSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="the job type (or task) submitted with the summary")
    job_id = serializers.UUIDField(allow_null=True, help_text="the callback's job, once submitted")


class BatchCallbacksSerializer(serializers.Serializer):
    on_complete = BatchCallbackSerializer(allow_null=True, help_text="every job final")
    on_success = BatchCallbackSerializer(allow_null=True, help_text="every job complete")


class BatchSerializer(serializers.ModelSerializer):
    owner: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    state = serializers.SerializerMethodField(
        help_text="open (jobs may join) | running | complete (every job complete) | finished (some did not)"
    )
    total = serializers.SerializerMethodField(help_text="jobs in the batch")
    counts = serializers.SerializerMethodField(help_text="jobs by status (every status, zeros too)")
    progress = serializers.SerializerMethodField(help_text="mean of the jobs' progress, a final job counting 100")
    estimated_finish_at = serializers.SerializerMethodField(
        help_text="when its last job should end (null when none is unfinished; not computed in lists)"
    )
    callbacks = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id", "description", "owner", "state", "total", "counts", "progress", "estimated_finish_at",
            "callbacks", "context", "created_at", "closed_at", "canceled_at", "completed_at", "succeeded_at",
        ]  # fmt: skip
        read_only_fields = fields

    def _measured(self, batch: Batch) -> batches.Progress:
        cache = self.context.setdefault("progress", {}) if isinstance(self.context, dict) else {}
        if batch.pk not in cache:
            cache[batch.pk] = batches.batch_progress(batch.pk)
        return cache[batch.pk]

    def get_state(self, batch: Batch) -> str:
        return batches.state(batch, self._measured(batch))

    def get_total(self, batch: Batch) -> int:
        return self._measured(batch).total

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_counts(self, batch: Batch) -> dict[str, int]:
        return self._measured(batch).counts

    def get_progress(self, batch: Batch) -> float:
        return self._measured(batch).percent

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_estimated_finish_at(self, batch: Batch) -> str | None:
        in_list = isinstance(self.context, dict) and self.context.get("in_list")
        if in_list or not self._measured(batch).unfinished:
            return None
        finish = estimates.batch_finish(batch.pk)
        return None if finish is None else serializers.DateTimeField().to_representation(finish)

    @extend_schema_field(BatchCallbacksSerializer)
    def get_callbacks(self, batch: Batch) -> dict:
        return {
            "on_complete": {"type": batch.on_complete, "job_id": batch.complete_job} if batch.on_complete else None,
            "on_success": {"type": batch.on_success, "job_id": batch.success_job} if batch.on_success else None,
        }


class BatchCreatedSerializer(BatchSerializer):
    jobs = serializers.SerializerMethodField(help_text="the ids of the jobs submitted with it, in the request's order")

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "jobs"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_jobs(self, batch: Batch) -> list[str]:
        return [str(s.job.id) for s in self.context.get("submitted", [])]


class BatchCreateSerializer(RejectUnknownFields, serializers.Serializer):
    description = StrictCharField(max_length=batches.MAX_DESCRIPTION, required=False, default="", allow_blank=True)
    on_complete = StrictCharField(max_length=200, required=False, default="", allow_blank=True)
    on_success = StrictCharField(max_length=200, required=False, default="", allow_blank=True)
    open = StrictBooleanField(
        required=False, default=False, help_text="keep it open for more jobs (POST …/jobs/), until POST …/close/"
    )
    # many=True makes a ListSerializer, which takes max_length (the stubs know only the child's arguments).
    jobs = BulkItemSerializer(many=True, required=False, max_length=MAX_INLINE_JOBS)  # type: ignore[call-arg]

    def get_fields(self) -> dict:
        fields = super().get_fields()
        # Not a class attribute: "context" is the serializer's own.
        fields["context"] = serializers.DictField(required=False, default=dict, help_text="handed to the callbacks")
        return fields


class BatchJobsSerializer(RejectUnknownFields, serializers.Serializer):
    jobs = BulkItemSerializer(many=True, allow_empty=False, max_length=MAX_INLINE_JOBS)  # type: ignore[call-arg]


class BatchActionSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="jobs canceled / requeued")
    batch = BatchSerializer()


@extend_schema_view(
    retrieve=extend_schema(
        description="One batch: its jobs' counts by status, its estimated finish, its callbacks, whether it is open."
    )
)
class BatchViewSet(
    ContinuesCallersTrace, Conventions, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = BatchSerializer
    permission_classes = [OwnedRows]
    access_model = Batch

    def get_queryset(self) -> QuerySet[Batch]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Batch.objects.none()
        return access.visible(Batch.objects.select_related("owner").order_by("-created_at"), self.request.user)

    def list(self, request: Request, *args, **kwargs) -> Response:
        """The batches you may see, newest first."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        data = BatchSerializer(page, many=True, context={"in_list": True}).data
        return self.get_paginated_response(data)

    @extend_schema(request=BatchCreateSerializer, responses={201: BatchCreatedSerializer})
    def create(self, request: Request) -> Response:
        """A batch with its jobs, in one transaction; closed at once unless ``open``."""
        no_key_for_the_whole(request.headers)
        incoming = BatchCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        with refs_named_as_sent():
            batch, submitted = batches.create_batch(
                [spec_from(item, None) for item in data.get("jobs", [])],
                owner=request.user,
                description=data["description"],
                on_complete=data["on_complete"],
                on_success=data["on_success"],
                context=data["context"],
                keep_open=data["open"],
                allow_internal=False,
            )
        return Response(BatchCreatedSerializer(batch, context={"submitted": submitted}).data, status=201)

    @extend_schema(request=BatchJobsSerializer, responses={201: BatchCreatedSerializer, 409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def jobs(self, request: Request, pk: str) -> Response:
        """More jobs into an open batch."""
        batch = self.get_object()  # someone else's or none: a 404 first
        no_key_for_the_whole(request.headers)
        incoming = BatchJobsSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        specs = [spec_from(item, None) for item in incoming.validated_data["jobs"]]
        with refs_named_as_sent():
            submitted = batches.add_to_batch(batch.pk, specs, owner=request.user, allow_internal=False)
        batch.refresh_from_db()
        return Response(BatchCreatedSerializer(batch, context={"submitted": submitted}).data, status=201)

    @extend_schema(request=None, responses={200: BatchSerializer})
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        """No more jobs; the callbacks fire once every job is final."""
        return Response(BatchSerializer(batches.close_batch(self.get_object().pk)).data)

    @extend_schema(request=None, responses={200: BatchActionSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Close it and cancel its waiting jobs (running ones finish)."""
        batch = self.get_object()
        count = batches.cancel(batch.pk, actor=request.user)
        batch.refresh_from_db()
        return Response({"count": count, "batch": BatchSerializer(batch).data}, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: BatchActionSerializer})
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request: Request, pk: str) -> Response:
        """Requeue its failed, dead-lettered and canceled jobs."""
        batch = self.get_object()
        count = batches.retry_failed(batch.pk, actor=request.user)
        batch.refresh_from_db()
        return Response({"count": count, "batch": BatchSerializer(batch).data})
