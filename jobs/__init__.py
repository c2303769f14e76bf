"""Jobdesk's public face: everything an app (ingestion, or a host project's own) uses.

    from jobs import job_type, cron, submit, UserFixableError

Job types and crons (``job_type``, ``cron``, ``subject_field``), submitting work
(``submit``, ``submit_many``, ``JobSpec``), batches and chains (``batch``,
``create_batch``, ``add_to_batch``, ``close_batch``, ``batch_progress``, ``Batch``,
``chain``, ``task_spec``), the errors a handler raises or a caller
catches, the actions on a job (``cancel``, ``requeue``, ``promote``, ``run_now``,
``note``), the record and its status vocabulary (``Job``, ``Status``, …), backpressure
(``retry_after_backlog``), who may see what (``visible``, ``may_see``), the pieces for an
app's own API (``JobSerializer``, ``BatchSerializer``, ``estimate_page``, ``OwnedRows``), its admin
(``InputChecked``) and its own WebSocket routes (``FollowConsumer``, ``subject_group``, …). Anything else under
``jobs.`` is the platform's inside and may change. docs/architecture.md says more.

The names load on first use (PEP 562), so importing ``jobs`` before Django's apps are
ready (as Django itself does) costs nothing and touches no model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_FACE = {
    # job types, crons, subjects
    "job_type": "jobs.core.registry",
    "cron": "jobs.core.registry",
    "subject_field": "jobs.core.registry",
    # submitting
    "submit": "jobs.core.submit",
    "submit_many": "jobs.core.submit",
    "JobSpec": "jobs.core.submit",
    "Submitted": "jobs.core.submit",
    # batches and chains
    "batch": "jobs.core.batches",
    "create_batch": "jobs.core.batches",
    "add_to_batch": "jobs.core.batches",
    "close_batch": "jobs.core.batches",
    "batch_progress": "jobs.core.batches",
    "Batch": "jobs.core.models",
    "chain": "jobs.core.dependencies",
    "task_spec": "jobs.tasks.backend",
    # errors
    "TemporaryError": "jobs.core.errors",
    "UserFixableError": "jobs.core.errors",
    "AdminRequiredError": "jobs.core.errors",
    "SubmitError": "jobs.core.errors",
    "ActionRefused": "jobs.core.errors",
    "JobNotFound": "jobs.core.errors",
    # actions
    "cancel": "jobs.core.actions",
    "requeue": "jobs.core.actions",
    "promote": "jobs.core.actions",
    "run_now": "jobs.core.actions",
    "note": "jobs.core.lifecycle",
    # the record
    "Job": "jobs.core.models",
    "JobEvent": "jobs.core.models",
    "Status": "jobs.core.models",
    "Priority": "jobs.core.models",
    "FINAL_STATUSES": "jobs.core.models",
    "PENDING_STATUSES": "jobs.core.models",
    "UNFINISHED_STATUSES": "jobs.core.models",
    # who sees what
    "visible": "jobs.core.access",
    "may_see": "jobs.core.access",
    # backpressure
    "retry_after_backlog": "jobs.insight.backpressure",
    # an app's own API
    "JobSerializer": "jobs.api.serializers",
    "BatchSerializer": "jobs.api.batches",
    "estimate_page": "jobs.api.serializers",
    "OwnedRows": "jobs.api.permissions",
    # an app's own admin
    "InputChecked": "jobs.console.input_checks",
    # an app's own WebSocket routes
    "FollowConsumer": "jobs.live.consumers",
    "Refused": "jobs.live.consumers",
    "parse_uuid": "jobs.live.consumers",
    "NOT_FOUND": "jobs.live.consumers",
    "FORBIDDEN": "jobs.live.consumers",
    "job_snapshot": "jobs.live.snapshots",
    "gone_snapshot": "jobs.live.snapshots",
    "subject_group": "jobs.core.relay",
    # a project's ASGI application
    "websocket_urlpatterns": "jobs.live.routing",
    "websocket_fallback": "jobs.live.routing",  # last: an unknown path closes with 4404, not a 500
    "TokenOrSessionAuth": "jobs.live.wsauth",
}

__all__ = [
    "ActionRefused",
    "AdminRequiredError",
    "Batch",
    "BatchSerializer",
    "FINAL_STATUSES",
    "FORBIDDEN",
    "FollowConsumer",
    "Job",
    "JobEvent",
    "JobNotFound",
    "JobSerializer",
    "JobSpec",
    "NOT_FOUND",
    "OwnedRows",
    "PENDING_STATUSES",
    "Priority",
    "Refused",
    "InputChecked",
    "Status",
    "SubmitError",
    "Submitted",
    "TemporaryError",
    "TokenOrSessionAuth",
    "UNFINISHED_STATUSES",
    "UserFixableError",
    "add_to_batch",
    "batch",
    "batch_progress",
    "cancel",
    "chain",
    "close_batch",
    "create_batch",
    "cron",
    "estimate_page",
    "gone_snapshot",
    "job_snapshot",
    "job_type",
    "may_see",
    "note",
    "parse_uuid",
    "promote",
    "requeue",
    "retry_after_backlog",
    "run_now",
    "subject_field",
    "subject_group",
    "submit",
    "submit_many",
    "task_spec",
    "visible",
    "websocket_fallback",
    "websocket_urlpatterns",
]


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


if TYPE_CHECKING:  # what a type checker and an editor see
    from jobs.api.batches import BatchSerializer
    from jobs.api.permissions import OwnedRows
    from jobs.api.serializers import JobSerializer, estimate_page
    from jobs.console.input_checks import InputChecked
    from jobs.core.access import may_see, visible
    from jobs.core.actions import cancel, promote, requeue, run_now
    from jobs.core.batches import add_to_batch, batch, batch_progress, close_batch, create_batch
    from jobs.core.dependencies import chain
    from jobs.core.errors import (
        ActionRefused,
        AdminRequiredError,
        JobNotFound,
        SubmitError,
        TemporaryError,
        UserFixableError,
    )
    from jobs.core.lifecycle import note
    from jobs.core.models import (
        FINAL_STATUSES,
        PENDING_STATUSES,
        UNFINISHED_STATUSES,
        Batch,
        Job,
        JobEvent,
        Priority,
        Status,
    )
    from jobs.core.registry import cron, job_type, subject_field
    from jobs.core.relay import subject_group
    from jobs.core.submit import JobSpec, Submitted, submit, submit_many
    from jobs.insight.backpressure import retry_after_backlog
    from jobs.live.consumers import FORBIDDEN, NOT_FOUND, FollowConsumer, Refused, parse_uuid
    from jobs.live.routing import websocket_fallback, websocket_urlpatterns
    from jobs.live.snapshots import gone_snapshot, job_snapshot
    from jobs.live.wsauth import TokenOrSessionAuth
    from jobs.tasks.backend import task_spec
