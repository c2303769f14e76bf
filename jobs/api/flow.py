"""``/api/queues/<name>/…`` and ``/api/types/…`` (staff): the flow-control levers.

Pause and resume a queue or a job type, set or reset a type's concurrency and rate
limits, and read what applies with who changed it and why. Reading needs the view
permission on flow controls, acting the change permission (the "Operators" group)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apikit.errors import Refusal
from apikit.serializers import RejectUnknownFields
from apikit.views import Conventions
from jobs.api.permissions import StaffModelPermissions
from jobs.core import flow
from jobs.core.errors import InvalidInput, SubmitError
from jobs.core.models import FlowControl, Hold

QUEUE, TYPE = FlowControl.Kind.QUEUE, FlowControl.Kind.TYPE
NAME_PATTERN = r"[A-Za-z0-9_.:-]+"  # job type names and queue names; anything else is a 404


class ReasonSerializer(RejectUnknownFields):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="why: shown beside the pause and in the audit trail"
    )


class LimitsSerializer(ReasonSerializer):
    concurrency = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100_000, help_text="jobs active at once; null: no limit"
    )
    rate = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=40,
        help_text='starts per period, e.g. "100/minute" or "5/2s"; null or "": no limit',
    )

    def validate_rate(self, value: str | None) -> str | None:
        # Checked here, with the other fields: a bad rate beside a bad concurrency is
        # named in the same answer, not only once the concurrency is mended.
        if value:
            try:
                flow.validate_rate(value)
            except InvalidInput as error:
                raise serializers.ValidationError(f"{error.message} {error.hint}".strip()) from None
        return value


class FlowChangeSerializer(serializers.Serializer):
    action = serializers.CharField()
    who = serializers.CharField()
    reason = serializers.CharField()
    before = serializers.DictField()
    after = serializers.DictField()
    created_at = serializers.DateTimeField()


class PauseFields(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    paused_reason = serializers.CharField()
    paused_by = serializers.CharField()
    paused_at = serializers.DateTimeField(allow_null=True)


class QueueLeverSerializer(PauseFields):
    held = serializers.IntegerField(help_text="queued jobs parked by the pause")


class HeldSerializer(serializers.Serializer):
    queue_paused = serializers.IntegerField()
    type_paused = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    rate = serializers.IntegerField()


class TypeLeverSerializer(PauseFields):
    priority = serializers.CharField()
    heavy = serializers.BooleanField()
    concurrency = serializers.IntegerField(allow_null=True, help_text="what applies now; null: no limit")
    concurrency_from = serializers.ChoiceField(choices=["code", "operator"])
    rate = serializers.CharField(allow_null=True)
    rate_from = serializers.ChoiceField(choices=["code", "operator"])
    code_concurrency = serializers.IntegerField(allow_null=True)
    code_rate = serializers.CharField(allow_null=True)
    active = serializers.IntegerField()
    stopping = serializers.IntegerField(
        help_text="canceled runs not stopped yet (their lease holds): they take a slot of the concurrency limit too"
    )
    held = HeldSerializer(help_text="queued jobs parked, by why")


class TypeLeverDetailSerializer(TypeLeverSerializer):
    changes = FlowChangeSerializer(many=True, help_text="the audit trail, newest first")


assert set(HeldSerializer().fields) == set(Hold.values)  # noqa: S101 - the schema names every hold


def _existing(kind: str, name: str) -> str:
    """The queue or type the path names, or a 404 naming the ones there are."""
    try:
        flow.check_target(kind, name)
    except SubmitError as error:
        raise Refusal(404, "not_found", str(error), hint=error.hint) from None
    return name


def _by(request: Request) -> dict:
    return {"actor": request.user, "reason": _reason(request)}


def _reason(request: Request) -> str:
    """The optional reason in the body. No body is none; a body that is not an object
    (``null``, a list, a number) is a 400, as the schema says."""
    body = ReasonSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data.get("reason", "")


class QueueLeverViewSet(Conventions, viewsets.ViewSet):
    """Pause or resume a priority queue (``immediate``, ``normal``, ``low``)."""

    permission_classes = [StaffModelPermissions]
    access_model = FlowControl
    write_permission = "change"
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN

    @extend_schema(responses={200: QueueLeverSerializer})
    def retrieve(self, request: Request, name: str) -> Response:
        """Whether the queue is paused, since when, by whom and why."""
        return Response(QueueLeverSerializer(flow.describe_queue(_existing(QUEUE, name))).data)

    @extend_schema(request=ReasonSerializer, responses={200: QueueLeverSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        """Stop starting this queue's jobs: running ones finish, queued ones wait (no
        attempt spent) until resumed. Survives Redis flushes and restarts."""
        flow.pause(QUEUE, _existing(QUEUE, name), **_by(request))
        return Response(QueueLeverSerializer(flow.describe_queue(name)).data)

    @extend_schema(request=ReasonSerializer, responses={200: QueueLeverSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        """The queue's jobs start again, in their order."""
        flow.resume(QUEUE, _existing(QUEUE, name), **_by(request))
        return Response(QueueLeverSerializer(flow.describe_queue(name)).data)


class TypeLeverViewSet(Conventions, viewsets.ViewSet):
    """A job type's levers: pause, resume, concurrency and rate limits."""

    permission_classes = [StaffModelPermissions]
    access_model = FlowControl
    write_permission = "change"
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
    pagination_class = None  # one row per registered type: a short, whole list
    filter_backends: list = []

    @extend_schema(responses={200: TypeLeverSerializer(many=True)})
    def list(self, request: Request) -> Response:
        """Every registered job type with its levers: paused or not, its concurrency and rate limits."""
        return Response(TypeLeverSerializer(flow.describe_types(), many=True).data)

    @extend_schema(responses={200: TypeLeverDetailSerializer})
    def retrieve(self, request: Request, name: str) -> Response:
        """One job type's levers, where each limit comes from (code or operator), and their recent changes."""
        return self._detail(_existing(TYPE, name))

    @extend_schema(
        request=LimitsSerializer,
        responses={200: TypeLeverDetailSerializer, 400: OpenApiResponse(description="a bad limit, named")},
    )
    def partial_update(self, request: Request, name: str) -> Response:
        """Set the type's limits (kept until reset to the code's): ``concurrency`` (null:
        none) and ``rate`` (null or "": none)."""
        _existing(TYPE, name)
        body = LimitsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        limits = {key: body.validated_data[key] for key in ("concurrency", "rate") if key in body.validated_data}
        if not limits:
            raise InvalidInput("Nothing to change.", field="concurrency", hint="Send concurrency, rate or both.")
        flow.set_limits(name, **limits, actor=request.user, reason=body.validated_data.get("reason", ""))
        return self._detail(name)

    @extend_schema(request=ReasonSerializer, responses={200: TypeLeverDetailSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        """Stop starting jobs of this type; queued ones wait without spending an attempt."""
        flow.pause(TYPE, _existing(TYPE, name), **_by(request))
        return self._detail(name)

    @extend_schema(request=ReasonSerializer, responses={200: TypeLeverDetailSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        """Jobs of this type start again."""
        flow.resume(TYPE, _existing(TYPE, name), **_by(request))
        return self._detail(name)

    @extend_schema(request=ReasonSerializer, responses={200: TypeLeverDetailSerializer})
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, name: str) -> Response:
        """Back to the limits the code declares."""
        flow.reset_limits(_existing(TYPE, name), **_by(request))
        return self._detail(name)

    def _detail(self, name: str) -> Response:
        described = flow.describe_type(name)
        described["changes"] = flow.recent_changes(FlowControl.Kind.TYPE, name)
        return Response(TypeLeverDetailSerializer(described).data)
