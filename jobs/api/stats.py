"""``GET /api/stats/``: per job type over a period; users see their own jobs, staff all."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikit.serializers import NoEmptyValues
from apikit.views import Conventions
from jobs.core import access
from jobs.insight import stats

MAX_HOURS = 24 * 400


class StatsQuery(NoEmptyValues, serializers.Serializer):
    hours = serializers.FloatField(
        required=False, min_value=0.01, max_value=MAX_HOURS, help_text="the period's length (default 24); ignored "
        "when since is given",
    )  # fmt: skip
    since = serializers.DateTimeField(required=False, help_text="the period's start (before until)")
    until = serializers.DateTimeField(
        required=False, help_text=f"the period's end (default now); at most {MAX_HOURS} hours after since"
    )

    def validate(self, data: dict) -> dict:
        until = data.get("until") or timezone.now()
        try:
            since = data.get("since") or until - timedelta(hours=data.get("hours", 24))
        except OverflowError:  # a period reaching back before the year 1
            raise serializers.ValidationError({"until": ["The period would start before the year 1."]}) from None
        # Named by the field that set the period's start: since, or hours back from until.
        start = "since" if data.get("since") else "hours"
        if since >= until:
            raise serializers.ValidationError({"since": ["since must be before until."]})
        if until - since > timedelta(hours=MAX_HOURS):
            raise serializers.ValidationError({start: [f"The period is at most {MAX_HOURS} hours."]})
        return {"since": since, "until": until}


class StatsView(Conventions, APIView):
    @extend_schema(
        parameters=[StatsQuery],
        responses={
            200: OpenApiResponse(
                description="per type: counts, rates, throughput, duration, queue wait "
                "and ETA error percentiles; a time series"
            )
        },  # fmt: skip
    )
    def get(self, request: Request) -> Response:
        """Figures per job type over a period (``hours`` before ``until``, by default the
        last 24 hours; or from ``since``), for your jobs (an operator's: everyone's)."""
        query = StatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        owner = None if access.sees_all(request.user) else request.user
        return Response(stats.summary(query.validated_data["since"], query.validated_data["until"], owner))
