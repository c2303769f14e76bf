"""Every endpoint × (anonymous, owner, another user, an operator who acts, a read-only
operator, staff with no permission): status codes, and lists that never show another
user's rows. One rule (jobs.core.access): permissions for staff, ownership for the rest."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from ingestion.models import Material
from jobs.core import batches
from jobs.core.models import Batch, Job
from jobs.core.submit import JobSpec, submit
from jobs.upkeep import schedules
from workwindow.models import WorkWindow

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "other", "staff", "read_only", "bare_staff")


@pytest.fixture
def world(alice, bob, operator, watcher, make_user, api_as, run_worker):
    """Alice owns a finished job, a waiting job and a processed material."""
    done = submit("diagnostics.noop", owner=alice).job
    response = api_as(alice).post(
        "/api/materials/", {"file": SimpleUploadedFile("a.txt", b"alice's notes")}, format="multipart"
    )
    run_worker()  # the material is processed: reprocessing it is allowed
    waiting = submit("diagnostics.sleep", {"seconds": 1}, owner=alice).job
    material = Material.objects.get(pk=response.data["id"])
    window = WorkWindow.objects.create(name="nights", time_zone="UTC", start_time="22:00", end_time="06:00")
    batch, _ = batches.create_batch([JobSpec("diagnostics.sleep", {"seconds": 1})] * 2, owner=alice)
    open_batch = batches.open_batch(owner=alice)
    clients = {
        "anonymous": api_as(None),
        "owner": api_as(alice),
        "other": api_as(bob),
        "staff": api_as(operator),
        "read_only": api_as(watcher),
        "bare_staff": api_as(make_user("bare", staff=True)),  # is_staff, no permission: an ordinary user
    }
    return {"done": done, "waiting": waiting, "material": material, "window": window, "clients": clients,
            "batch": batch, "open_batch": open_batch}  # fmt: skip


# (method, path template, body, expected status per role: anonymous, owner, other,
# staff who act, read-only operator, staff with no permission)
MATRIX = [
    ("get", "/api/jobs/{done}/", None, (401, 200, 404, 200, 200, 404)),
    ("get", "/api/jobs/{done}/events/", None, (401, 200, 404, 200, 200, 404)),
    ("post", "/api/jobs/{done}/retry/", None, (401, 409, 404, 409, 403, 404)),  # complete: the state forbids it
    ("post", "/api/jobs/{waiting}/run-now/", None, (401, 409, 404, 409, 403, 404)),  # queued already
    ("post", "/api/jobs/{waiting}/promote/", None, (401, 200, 404, 409, 403, 404)),  # immediate already
    ("post", "/api/jobs/{waiting}/cancel/", None, (401, 200, 404, 409, 403, 404)),
    ("post", "/api/jobs/", {"type": "diagnostics.noop"}, (401, 201, 201, 201, 403, 201)),
    ("post", "/api/jobs/", {"type": "jobs.prune_jobs"}, (401, 400, 400, 400, 403, 400)),  # internal: code only
    ("post", "/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop"}]}, (401, 201, 201, 201, 403, 201)),
    # Batches: ownership, like jobs.
    ("get", "/api/batches/", None, (401, 200, 200, 200, 200, 200)),
    ("get", "/api/batches/{batch}/", None, (401, 200, 404, 200, 200, 404)),
    ("post", "/api/batches/", {"jobs": [{"type": "diagnostics.noop"}]}, (401, 201, 201, 201, 403, 201)),
    ("post", "/api/batches/", {"on_complete": "jobs.prune_jobs"}, (401, 400, 400, 400, 403, 400)),  # internal
    (
        "post",
        "/api/batches/{open_batch}/jobs/",
        {"jobs": [{"type": "diagnostics.noop"}]},
        (401, 201, 404, 201, 403, 404),
    ),  # fmt: skip
    (
        "post",
        "/api/batches/{batch}/jobs/",
        {"jobs": [{"type": "diagnostics.noop"}]},
        (401, 409, 404, 409, 403, 404),
    ),  # closed: only its own running jobs add more  # fmt: skip
    ("post", "/api/batches/{open_batch}/close/", None, (401, 200, 404, 200, 403, 404)),
    ("post", "/api/batches/{batch}/cancel/", None, (401, 200, 404, 409, 403, 404)),  # the owner's cancel finished it
    ("post", "/api/batches/{batch}/retry-failed/", None, (401, 200, 404, 200, 403, 404)),
    ("get", "/api/materials/{material}/", None, (401, 200, 404, 200, 200, 404)),
    ("get", "/api/materials/{material}/chunks/", None, (401, 200, 404, 200, 200, 404)),
    ("post", "/api/materials/{material}/reprocess/", None, (401, 200, 404, 409, 403, 404)),  # staff: busy again
    ("get", "/api/queues/", None, (401, 200, 200, 200, 200, 200)),
    ("get", "/api/stats/", None, (401, 200, 200, 200, 200, 200)),
    ("get", "/api/work-windows/", None, (401, 403, 403, 200, 200, 403)),
    ("get", "/api/work-windows/{window}/", None, (401, 403, 403, 200, 200, 403)),
    ("patch", "/api/work-windows/{window}/", {"enabled": False}, (401, 403, 403, 200, 403, 403)),
    (
        "post",
        "/api/work-windows/",
        {"name": "w", "time_zone": "UTC", "start_time": "01:00", "end_time": "02:00"},
        (401, 403, 403, 201, 403, 403),
    ),  # fmt: skip
    ("get", "/api/health/live/", None, (200, 200, 200, 200, 200, 200)),
    # Flow control: staff by permission; the levers change the whole system.
    ("get", "/api/types/", None, (401, 403, 403, 200, 200, 403)),
    ("get", "/api/types/diagnostics.noop/", None, (401, 403, 403, 200, 200, 403)),
    ("get", "/api/queues/low/", None, (401, 403, 403, 200, 200, 403)),
    ("post", "/api/queues/low/pause/", {"reason": "r"}, (401, 403, 403, 200, 403, 403)),
    ("post", "/api/queues/low/resume/", None, (401, 403, 403, 200, 403, 403)),
    ("post", "/api/types/diagnostics.noop/pause/", None, (401, 403, 403, 200, 403, 403)),
    ("patch", "/api/types/diagnostics.noop/", {"concurrency": 3}, (401, 403, 403, 200, 403, 403)),
    ("post", "/api/types/diagnostics.noop/reset/", None, (401, 403, 403, 200, 403, 403)),
    # Schedules: staff by permission.
    ("get", "/api/schedules/", None, (401, 403, 403, 200, 200, 403)),
    ("get", "/api/schedules/prune-jobs/", None, (401, 403, 403, 200, 200, 403)),
    ("patch", "/api/schedules/prune-jobs/", {"cron": "0 10 * * *"}, (401, 403, 403, 200, 403, 403)),
    ("post", "/api/schedules/prune-jobs/pause/", None, (401, 403, 403, 200, 403, 403)),
    ("post", "/api/schedules/prune-jobs/run-now/", None, (401, 403, 403, 201, 403, 403)),
    (
        "post",
        "/api/schedules/",
        {"name": "s", "job_type": "diagnostics.noop", "cron": "0 * * * *"},
        (401, 403, 403, 201, 403, 403),
    ),  # fmt: skip
]


@pytest.mark.parametrize(("method", "template", "body", "expected"), MATRIX, ids=[f"{m} {t}" for m, t, *_ in MATRIX])
def test_who_may_do_what(world, method, template, body, expected):
    schedules.sync_from_code()
    path = template.format(done=world["done"].id, waiting=world["waiting"].id, material=world["material"].id,
                           window=world["window"].id, batch=world["batch"].id,
                           open_batch=world["open_batch"].id)  # fmt: skip
    for role, status in zip(ROLES, expected, strict=True):
        response = getattr(world["clients"][role], method)(path, body, format="json")
        assert response.status_code == status, (role, response.content[:300])
        if status >= 400:
            assert response.json()["error"]["message"]  # always the one error shape


@pytest.mark.parametrize("path", ["/api/jobs/", "/api/materials/", "/api/batches/"])
def test_lists_never_show_other_users_rows(world, path, bob, api_as):
    submit("diagnostics.noop", owner=bob)
    batches.create_batch([JobSpec("diagnostics.noop")], owner=bob)
    owner_ids = {str(o) for o in Job.objects.filter(owner__username="alice").values_list("id", flat=True)}
    owner_ids |= {str(m) for m in Material.objects.filter(owner__username="alice").values_list("id", flat=True)}
    owner_ids |= {str(b) for b in Batch.objects.filter(owner__username="alice").values_list("id", flat=True)}
    seen = {role: {item["id"] for item in world["clients"][role].get(path).data["results"]} for role in ROLES[1:]}
    assert seen["owner"] and seen["owner"] <= owner_ids
    assert not seen["other"] & owner_ids
    assert not seen["bare_staff"] & owner_ids, "is_staff alone shows nobody else's rows"
    assert seen["owner"] <= seen["staff"] and seen["owner"] <= seen["read_only"]
    assert world["clients"]["anonymous"].get(path).status_code == 401


def test_who_may_follow_a_batch(world, make_user):
    """``/ws/batches/<id>/`` follows the same rule: 4401 anonymous, 4403 not theirs,
    4404 no such batch; the owner and both operators' groups get the snapshot."""
    from asgiref.sync import async_to_sync, sync_to_async

    from jobs.live.tests.test_websockets import ORIGIN, close_code, connect, token_header

    path = f"/ws/batches/{world['batch'].id}/"
    users = {"owner": "alice", "other": "bob", "staff": "operator", "read_only": "watcher", "bare_staff": "bare"}

    @async_to_sync
    async def outcomes() -> dict:
        seen: dict = {"anonymous": await close_code(path, [ORIGIN])}
        for role, username in users.items():
            header = await sync_to_async(lambda name=username: token_header(User.objects.get(username=name)))()
            communicator, _ = await connect(path, [header])
            first = await communicator.receive_output(timeout=5)
            seen[role] = first.get("code") if first["type"] == "websocket.close" else json.loads(first["text"])["type"]
            await communicator.disconnect()
        header = await sync_to_async(lambda: token_header(User.objects.get(username="alice")))()
        seen["unknown"] = await close_code(f"/ws/batches/{world['waiting'].id}/", [header])
        return seen

    assert outcomes() == {
        "anonymous": 4401, "owner": "snapshot", "other": 4403, "staff": "snapshot", "read_only": "snapshot",
        "bare_staff": 4403, "unknown": 4404,
    }  # fmt: skip


def test_actions_record_who_did_them(world, operator):
    world["clients"]["staff"].post(f"/api/jobs/{world['waiting'].id}/cancel/")
    event = Job.objects.get(pk=world["waiting"].id).events.order_by("-seq").first()
    assert event.actor == operator and event.to_status == "canceled"


def test_a_read_only_operator_writes_nothing_by_session_either(world, watcher):
    """The browser's way in (session cookie + CSRF token) is held to the same rule."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(watcher)
    client.get("/admin/")
    token = client.cookies["csrftoken"].value
    writes = (
        f"/api/jobs/{world['waiting'].id}/cancel/",
        "/api/jobs/",
        f"/api/materials/{world['material'].id}/reprocess/",
    )
    for path in writes:
        response = client.post(
            path, {"type": "diagnostics.noop"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
        )
        assert response.status_code == 403, (path, response.content[:200])
    assert Job.objects.get(pk=world["waiting"].id).status == "queued"
