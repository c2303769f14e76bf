"""Read-only health of the moving parts: database, Redis, workers, scheduler."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.core import flow, queueing

# The leading scheduler beats after each poll (every second); a poll may take a while
# under a large backlog of due work, and a standby takes the lead within seconds.
SCHEDULER_STALE_SECONDS = 150
NO_WORKER = "no RQ worker is alive, so nothing runs and no job has an ETA: start `manage.py rqworker-pool`"


def check() -> tuple[bool, dict]:
    """(healthy, details). Each part reports ok plus what an operator needs to know."""
    parts = {"database": _database(), "redis": _redis()}
    if parts["redis"]["ok"]:
        parts["workers"] = _workers()
        parts["scheduler"] = scheduler_state()
    else:
        parts["workers"] = parts["scheduler"] = {"ok": False, "error": "Redis unreachable"}
    healthy = all(part["ok"] for part in parts.values())
    failing = [name for name, part in parts.items() if not part["ok"]]
    return healthy, {"status": "ok" if healthy else "failing", "failing": failing, **parts, "paused": _paused()}


def _paused() -> dict:
    """What operators paused: reported, never failing (it is a decision, not a fault)."""
    try:
        return {"queues": flow.paused_queues(), "types": flow.paused_types()}
    except Exception as error:  # the database part above already reports an outage
        return {"queues": [], "types": [], "error": str(error)}


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as error:  # any driver error means "down" here
        return {"ok": False, "error": str(error)}


def _redis() -> dict:
    try:
        queueing.connection().ping()
        return {"ok": True}
    except RedisError as error:
        return {"ok": False, "error": str(error)}


def _workers() -> dict:
    workers = queueing.workers()
    return {
        "ok": bool(workers),
        "count": len(workers),
        "error": None if workers else NO_WORKER,
        "workers": [
            {"name": w.name, "host": w.hostname, "pid": w.pid, "current_job": w.current_job, "queues": w.queues}
            for w in workers.values()
        ],
    }


def scheduler_state() -> dict:
    """Alive when its last poll that went through is recent; ``cron_ran_at``: when a
    worker last ran its heartbeat cron job (a tick taken all the way), for the reader."""
    keys = [queueing.scheduler_beat_key(), queueing.scheduler_beat_key(of_cron_work=True)]
    beat, cron = queueing.connection().mget(keys)
    cron_ran_at = _moment(cron).isoformat() if cron else None
    if beat is None:
        return {"ok": False, "error": "no scheduler heartbeat: is `manage.py rqscheduler` running?",
                "cron_ran_at": cron_ran_at}  # fmt: skip
    age = (timezone.now() - _moment(beat)).total_seconds()
    ok = age <= SCHEDULER_STALE_SECONDS
    return {"ok": ok, "last_heartbeat": _moment(beat).isoformat(), "age_seconds": round(age, 1),
            "error": None if ok else f"last heartbeat {age:.0f}s ago: its polls fail or it stopped",
            "cron_ran_at": cron_ran_at}  # fmt: skip


def _moment(raw: bytes | str) -> datetime:
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
