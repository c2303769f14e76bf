"""Thin HTTP edge over the job services: validate, call one service, translate."""

from __future__ import annotations

from typing import cast

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apikit.views import Conventions
from jobs.api.filters import JobFilter
from jobs.api.permissions import OwnedRows
from jobs.api.serializers import (
    BulkSubmitSerializer,
    JobEventSerializer,
    JobLogsQuerySerializer,
    JobLogsSerializer,
    JobSerializer,
    JobSubmitSerializer,
    no_key_for_the_whole,
    refs_named_as_sent,
)
from jobs.api.traces import ContinuesCallersTrace
from jobs.core import access, actions, logbook, submit
from jobs.core.errors import SubmitError, TransitionError
from jobs.core.models import Job
from jobs.insight import estimates

MAX_KEY_LENGTH = cast(int, Job._meta.get_field("idempotency_key").max_length)  # a CharField's: always set

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Same key from the same user returns the existing job (200) instead of a new one (201).",
)


def _idempotency_header(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None:
        key = _as_utf8(key)
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise SubmitError(
            f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters.",
            field="Idempotency-Key",
            hint="Use a shorter key, e.g. a UUID.",
        )
    return key


def _as_utf8(header: str) -> str:
    """A header as its bytes were sent, in UTF-8: Django decodes headers as Latin-1, so
    a key "€-1" in the header was another key than "€-1" in the body."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise SubmitError(
            "The Idempotency-Key header is not UTF-8 text.",
            field="Idempotency-Key",
            hint="Send the key as UTF-8 (or ASCII, e.g. a UUID).",
        ) from None


def _just_made(result: submit.Submitted) -> dict:
    """A job created a moment ago answers with the estimate submit just made (no second
    walk of the line, nor a second look for live workers when there was none)."""
    job = result.job
    first = estimates.first_of(job) if result.created else None
    return {job.id: first} if first is not None else {}


@extend_schema_view(
    list=extend_schema(description="The jobs you may see (your own; an operator sees everyone's), newest first."),
    retrieve=extend_schema(
        description="One job: its status and progress, its ETA and range while it waits, its result or error."
    ),
)
class JobViewSet(
    ContinuesCallersTrace, Conventions, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = JobSerializer
    filterset_class = JobFilter
    permission_classes = [OwnedRows]
    access_model = Job

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Job.objects.none()
        jobs = Job.objects.select_related("owner").prefetch_related("depends_on").order_by("-created_at")
        return access.visible(jobs, self.request.user)

    @extend_schema(
        request=JobSubmitSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: JobSerializer,
            200: OpenApiResponse(JobSerializer, description="existing job for the key"),
            409: OpenApiResponse(description="the key was used for another type or payload"),
        },
    )
    def create(self, request: Request) -> Response:
        """Submit a job of a registered type with its payload. 201 with the new job; 200
        with the job an ``Idempotency-Key`` (header or field) already made for the same
        type and payload (for another: 409)."""
        incoming = JobSubmitSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        spec = incoming.to_spec(default_key=_idempotency_header(request))
        result = submit.submit_one(spec, owner=request.user, allow_internal=False)
        return Response(
            JobSerializer(result.job, context={"estimates": _just_made(result)}).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=BulkSubmitSerializer,
        responses={201: JobSerializer(many=True), 200: JobSerializer(many=True)},
        filters=False,
    )
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def bulk(self, request: Request) -> Response:
        """Submit many jobs in one request: all of them or, on an error, none. Items may
        depend on each other (``ref``, ``depends_on_refs``). The jobs in the order sent:
        201 when any is new, 200 when every one was there already (each by its
        idempotency key), as a single submit answers."""
        no_key_for_the_whole(request.headers)
        incoming = BulkSubmitSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        with refs_named_as_sent():
            results = submit.submit_many(incoming.to_specs(), owner=request.user, allow_internal=False)
        made = {k: v for r in results for k, v in _just_made(r).items()}
        return Response(
            JobSerializer([r.job for r in results], many=True, context={"estimates": made}).data,
            status=status.HTTP_201_CREATED if any(r.created for r in results) else status.HTTP_200_OK,
        )

    @extend_schema(responses=JobEventSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None)
    def events(self, request: Request, pk: str) -> Response:
        """The job's timeline: every status change, who made it and why, oldest first."""
        job = self.get_object()
        page = self.paginate_queryset(job.events.select_related("actor").order_by("created_at", "id"))
        return self.get_paginated_response(JobEventSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("attempt", OpenApiTypes.INT, description="only this attempt's lines")],
        responses=JobLogsSerializer,
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def logs(self, request: Request, pk: str) -> Response:
        """What the job's handler logged, per attempt: the last JOB_LOG_LINES lines of
        each run, and how many older ones were dropped. Lines come while it is active."""
        job = self.get_object()
        query = JobLogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(JobLogsSerializer(logbook.read(job, query.validated_data.get("attempt"))).data)

    def _act(self, service, request: Request) -> Response:
        job = self.get_object()
        try:
            moved = service(job.id, actor=request.user)
        except TransitionError as refused:  # said in the endpoint's word (run-now, retry), not the move's
            word = getattr(type(self), self.action).url_path
            if refused.action == word:
                raise
            raise TransitionError(refused.job_id, word, refused.status, refused.allowed) from None
        return Response(JobSerializer(moved).data)

    @extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiResponse(description="state forbids it")})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """A new round of attempts for a failed, dead-lettered or canceled job: queued, or
        waiting while its dependencies have not all completed. 409 while a dependency
        failed or was canceled, or while its last run is still stopping."""
        return self._act(actions.requeue, request)

    @extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiResponse(description="state forbids it")})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel an unfinished job: one not yet running is withdrawn, a running one stopped."""
        return self._act(actions.cancel, request)

    @extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiResponse(description="state forbids it")})
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str) -> Response:
        """Its priority becomes ``immediate``: a queued job joins the end of the immediate
        queue; a scheduled, deferred, retrying or waiting one goes there when due."""
        return self._act(actions.promote, request)

    @extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiResponse(description="state forbids it")})
    @action(detail=True, methods=["post"], url_path="run-now")
    def run_now(self, request: Request, pk: str) -> Response:
        """A scheduled or retrying job joins its queue now."""
        return self._act(actions.run_now, request)
