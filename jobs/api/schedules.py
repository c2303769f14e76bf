"""``/api/schedules/`` (staff): the cron schedules, as operators see and steer them.

List and read every entry with its next five runs and its last runs; add one for any
registered type; change its cron, zone, payload, priority; pause, resume, run now;
reset a code entry to the code's; delete an operator's own. Reading needs the view
permission on schedules, adding the add permission, the rest the change permission."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from apikit.serializers import ChoiceField, RejectUnknownFields
from apikit.views import Conventions
from jobs.api.permissions import StaffModelPermissions
from jobs.api.serializers import JobSerializer
from jobs.core.models import Priority, Schedule
from jobs.upkeep import schedules

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"


class RunSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    manual = serializers.BooleanField(help_text='a "run now", not a tick')


class ScheduleSerializer(serializers.ModelSerializer):
    priority = serializers.ChoiceField(choices=["", *Priority.values], help_text="empty: the job type's own")
    next_runs = serializers.SerializerMethodField(help_text="the next five firings (UTC); empty while paused")
    last_runs = serializers.SerializerMethodField(help_text="the latest runs, newest first")

    class Meta:
        model = Schedule
        fields = [
            "name", "job_type", "payload", "priority", "cron", "time_zone", "paused",
            "from_code", "overridden", "code", "next_run_at", "next_runs", "last_run_at", "last_runs",
            "last_error", "updated_by", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_runs(self, row: Schedule) -> list[str]:
        return [serializers.DateTimeField().to_representation(at) for at in schedules.next_runs(row)]

    @extend_schema_field(RunSerializer(many=True))
    def get_last_runs(self, row: Schedule) -> list[dict]:
        return list(RunSerializer(schedules.last_runs(row), many=True).data)


class ScheduleChangeSerializer(RejectUnknownFields):
    job_type = serializers.CharField(required=False, max_length=100)
    payload = serializers.JSONField(required=False)
    priority = ChoiceField(choices=["", *Priority.values], required=False, help_text="empty: the job type's own")
    cron = serializers.CharField(required=False, max_length=100, help_text='e.g. "0 7 * * *"')
    time_zone = serializers.CharField(required=False, max_length=64, help_text='e.g. "Europe/Kyiv"')
    paused = serializers.BooleanField(required=False)


class ScheduleCreateSerializer(ScheduleChangeSerializer):
    name = serializers.RegexField(
        rf"^{NAME_PATTERN}$", max_length=100, help_text="letters, digits, '.', '_' and '-'"
    )  # fmt: skip
    job_type = serializers.CharField(max_length=100)
    cron = serializers.CharField(max_length=100, help_text='e.g. "0 7 * * *"')


def _by(request: Request) -> str:
    return str(request.user)


@extend_schema_view(
    list=extend_schema(description="Every cron entry, from the code and made here: its timetable, next and last runs."),
    retrieve=extend_schema(description="One cron entry: its timetable, zone, next runs and last runs."),
)
class ScheduleViewSet(Conventions, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Schedule.objects.all()
    serializer_class = ScheduleSerializer
    permission_classes = [StaffModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
    pagination_class = None  # a short list: every entry at once
    filter_backends: list = []

    @extend_schema(request=ScheduleCreateSerializer, responses={201: ScheduleSerializer})
    def create(self, request: Request) -> Response:
        """A new cron entry, made here rather than in code."""
        body = ScheduleCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        name, paused = values.pop("name"), values.pop("paused", False)
        row = schedules.create(name, values, by=_by(request))
        if paused:
            row = schedules.set_paused(name, True, by=_by(request))
        return Response(ScheduleSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ScheduleChangeSerializer, responses={200: ScheduleSerializer})
    def partial_update(self, request: Request, name: str) -> Response:
        """Change the entry; a code entry keeps the change until reset. Effective at
        once: the next run is computed again."""
        row = self.get_object()
        body = ScheduleChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        paused = values.pop("paused", None)
        if values:
            row = schedules.edit(row.name, values, by=_by(request))
        if paused is not None and paused != row.paused:
            row = schedules.set_paused(row.name, paused, by=_by(request))
        return Response(ScheduleSerializer(row).data)

    @extend_schema(responses={204: None, 400: OpenApiResponse(description="declared in code: pause it instead")})
    def destroy(self, request: Request, name: str) -> Response:
        """Delete an entry made here. One declared in code is refused (400): pause it instead."""
        schedules.delete(self.get_object().name)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        """No more timed runs of this entry until it is resumed (run-now still runs it)."""
        return Response(ScheduleSerializer(schedules.set_paused(self.get_object().name, True, by=_by(request))).data)

    @extend_schema(request=None, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        """The entry runs on its timetable again, from its next time on."""
        return Response(ScheduleSerializer(schedules.set_paused(self.get_object().name, False, by=_by(request))).data)

    @extend_schema(request=None, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, name: str) -> Response:
        """A code entry back to what the code declares."""
        return Response(ScheduleSerializer(schedules.reset(self.get_object().name, by=_by(request))).data)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"], url_path="run-now")
    def run_now(self, request: Request, name: str) -> Response:
        """One extra run now, outside the timetable."""
        try:
            job = schedules.run_now(self.get_object().name)
        except Schedule.DoesNotExist:
            raise NotFound(f"No schedule named {name!r}: it was deleted.") from None
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)
