"""``/api/work-windows/`` (staff, by Django permissions): list, create, edit windows.

The windows are ``workwindow``'s (pure policy and its model); their API lives with
the platform's, so ``workwindow`` depends on nothing of ``jobs``."""

import re

from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from apikit.serializers import RejectUnknownFields
from apikit.views import Conventions
from jobs.api.permissions import StaffModelPermissions
from workwindow.models import WorkWindow

_LOCAL_TIME = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"


@extend_schema_field({"type": "string", "pattern": _LOCAL_TIME, "example": "22:00"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the window's own zone: no offset (not RFC 3339's "time"), as
    the schema's pattern says. DRF's own parsing took "22:00+02:00" (dropping the offset),
    "2:0", "T22:00" and fractions of a second."""

    def to_internal_value(self, value):
        if not isinstance(value, str) or not re.fullmatch(_LOCAL_TIME, value, flags=re.ASCII):
            raise serializers.ValidationError(
                'A local time as "HH:MM" or "HH:MM:SS" (e.g. "22:00"), in the window\'s own zone: no offset.'
            )
        return super().to_internal_value(value)


class WorkWindowSerializer(RejectUnknownFields, serializers.ModelSerializer):
    start_time = LocalTimeField(help_text="opens at this local time")
    end_time = LocalTimeField(help_text="closes at this local time; the next day when not after the start")

    class Meta:
        model = WorkWindow
        fields = ["id", "name", "enabled", "time_zone", "start_time", "end_time", "weekdays", "updated_at"]
        read_only_fields = ["id", "updated_at"]


@extend_schema_view(
    list=extend_schema(description="The work windows: when heavy jobs may run (no enabled window: any time)."),
    create=extend_schema(description="A new work window: its zone, its start and end times and its weekdays."),
    retrieve=extend_schema(description="One work window."),
    partial_update=extend_schema(
        description="Change a work window: its name, zone, times, weekdays, or whether it is enabled."
    ),
)
class WorkWindowViewSet(
    Conventions,
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    queryset = WorkWindow.objects.all()
    serializer_class = WorkWindowSerializer
    permission_classes = [StaffModelPermissions]
    http_method_names = ["get", "post", "patch", "head", "options"]
