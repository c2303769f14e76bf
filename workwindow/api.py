"""``/api/work-windows/`` (staff only): list, create, edit windows."""

from rest_framework import mixins, routers, serializers, viewsets
from rest_framework.permissions import IsAdminUser

from workwindow.models import WorkWindow


class WorkWindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkWindow
        fields = ["id", "name", "enabled", "time_zone", "start_time", "end_time", "weekdays", "updated_at"]
        read_only_fields = ["id", "updated_at"]


class WorkWindowViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    queryset = WorkWindow.objects.all()
    serializer_class = WorkWindowSerializer
    permission_classes = [IsAdminUser]
    http_method_names = ["get", "post", "patch", "head", "options"]


router = routers.SimpleRouter()
router.register("work-windows", WorkWindowViewSet, basename="work-window")
urlpatterns = router.urls
