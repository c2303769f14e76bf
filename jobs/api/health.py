from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikit.views import Conventions
from jobs.core import access, registry
from jobs.core.models import FlowControl
from jobs.insight import health, queues


class HealthView(Conventions, APIView):
    """Database, Redis, workers and scheduler: 200 when all are fine, else 503 naming the
    part. Anyone may ask; only staff see each worker's host, pid and current job."""

    permission_classes = [AllowAny]
    throttle_classes: list = []  # probes poll it

    @extend_schema(responses={200: OpenApiResponse(description="healthy"), 503: OpenApiResponse(description="failing")})
    def get(self, request: Request) -> Response:
        healthy, details = health.check()
        if not access.sees_all(request.user):
            details.get("workers", {}).pop("workers", None)
        return Response(details, status=200 if healthy else 503)


class LiveView(Conventions, APIView):
    """The process answers: nothing else is checked."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []  # probes poll it

    @extend_schema(responses={200: OpenApiResponse(description="alive")})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class QueuesView(Conventions, APIView):
    """Depth per priority queue (in Redis and by status in the database) and workers."""

    @extend_schema(
        operation_id="queues_overview",  # not queues_retrieve: that is one queue's lever (/api/queues/{name}/)
        parameters=[OpenApiParameter("type", str, many=True, description="job types to estimate (default: all)")],
        responses={200: OpenApiResponse(description="queues, workers, new-job ETAs per type, ETA accuracy")},
    )
    def get(self, request: Request) -> Response:
        wanted = request.query_params.getlist("type") or None
        for name in wanted or ():
            registry.get(name)  # an unknown type is a 400 naming the known ones
        return Response(queues.overview(wanted, who_paused=access.sees_all(request.user, FlowControl)))
