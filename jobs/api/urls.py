from django.urls import path
from rest_framework.routers import DefaultRouter

from apikit.views import pooled_urls
from jobs.api.batches import BatchViewSet
from jobs.api.flow import QueueLeverViewSet, TypeLeverViewSet
from jobs.api.health import HealthView, LiveView, QueuesView
from jobs.api.schedules import ScheduleViewSet
from jobs.api.stats import StatsView
from jobs.api.views import JobViewSet
from jobs.api.windows import WorkWindowViewSet

router = DefaultRouter()
router.register("jobs", JobViewSet, basename="job")
router.register("batches", BatchViewSet, basename="batch")
router.register("queues", QueueLeverViewSet, basename="queue")
router.register("types", TypeLeverViewSet, basename="type")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("work-windows", WorkWindowViewSet, basename="work-window")

# Served from the event loop's threads under ASGI: their database connections last.
urlpatterns = pooled_urls(
    [
        path("health/", HealthView.as_view(), name="health"),
        path("health/live/", LiveView.as_view(), name="health-live"),
        path("queues/", QueuesView.as_view(), name="queues"),
        path("stats/", StatsView.as_view(), name="stats"),
        *router.urls,
    ]
)
