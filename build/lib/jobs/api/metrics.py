"""``GET /metrics``: Prometheus text, optionally behind a bearer token (METRICS_TOKEN)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from apikit.errors import error_body
from jobs.insight import metrics


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not secrets.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            body = error_body("not_authenticated", "This endpoint needs the metrics token.",
                              hint="Send 'Authorization: Bearer <METRICS_TOKEN>'.")  # fmt: skip
            return JsonResponse(body, status=401, headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
