"""The admin index's numbers: jobs by status (each a link to the filtered list), the dead
letters, and the paused queues. Two small grouped queries; no Redis (the index must
open when Redis is down)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from jobs.core import flow
from jobs.core.models import Status
from jobs.insight import dashboard

ORDER = [Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.WAITING, Status.RETRYING, Status.ACTIVE,
         Status.COMPLETE, Status.FAILED, Status.DEAD_LETTER, Status.CANCELED]  # fmt: skip


def numbers() -> dict[str, Any]:
    counts = dashboard.status_counts()
    jobs = reverse("admin:jobs_job_changelist")
    statuses = [
        {"status": str(status), "label": status.label.lower(), "count": counts.get(status, 0),
         "url": f"{jobs}?status__exact={status}&system=all",
         "alarm": status in (Status.FAILED, Status.DEAD_LETTER) and counts.get(status, 0) > 0}
        for status in ORDER
    ]  # fmt: skip
    paused = [queue for queue in flow.describe_queues() if queue["paused"]]
    return {
        "statuses": statuses,
        "total": sum(counts.values()),
        "dead_letters": counts.get(Status.DEAD_LETTER, 0),
        "dead_url": f"{jobs}?status__exact={Status.DEAD_LETTER}&system=all",
        "paused_queues": paused,
    }
