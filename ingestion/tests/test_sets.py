"""Several files in one upload: one set, one batch of processing jobs, one callback that
records the set as done; a follower of the batch sees its progress rise to 100."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from ingestion import sets
from ingestion.models import Material, MaterialSet
from jobs.core.models import Batch, Job, Status
from jobs.live import consumers
from jobs.live.tests.test_websockets import connect, follow, token_header

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


def files(count: int) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(f"notes-{n}.txt", (f"File {n}. " + "A sentence about materials. " * 200).encode())
        for n in range(count)
    ]


def test_several_files_become_one_set_and_one_batch_with_one_callback(api_as, alice, run_worker):
    response = api_as(alice).post("/api/materials/", {"file": files(3)}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["materials"]) == 3 and body["batch"]["total"] == 3 and body["batch"]["state"] == "running"
    material_set = MaterialSet.objects.get(pk=body["material_set"])
    assert str(material_set.batch_id) == body["batch"]["id"]
    jobs = Job.objects.filter(batch_id=material_set.batch_id)
    assert {str(j.id) for j in jobs} == {m["job"]["id"] for m in body["materials"]}
    assert set(Material.objects.filter(upload_set=material_set).values_list("name", flat=True)) == {
        "notes-0.txt", "notes-1.txt", "notes-2.txt",
    }  # fmt: skip
    run_worker()
    material_set.refresh_from_db()
    assert material_set.done_at is not None
    assert material_set.summary == {"total": 3, "counts": {"complete": 3}, "succeeded": True}
    assert Job.objects.filter(type=sets.SET_DONE).count() == 1
    assert set(Material.objects.values_list("status", flat=True)) == {Material.Status.READY}


def test_a_refused_file_refuses_the_whole_upload_and_stores_nothing(api_as, alice, media):
    bad = SimpleUploadedFile("tool.exe", b"MZ\x90\x00" + b"\x00" * 100)
    response = api_as(alice).post("/api/materials/", {"file": [*files(2), bad]}, format="multipart")
    assert response.status_code == 415
    assert not Material.objects.exists() and not MaterialSet.objects.exists() and not Batch.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()] if media.exists() else True


def test_a_follower_of_the_batch_sees_progress_rise_to_100_then_a_final_message(api_as, alice, run_worker, monkeypatch):
    monkeypatch.setattr(consumers, "BATCH_UPDATE_INTERVAL", 0.0)  # every event re-read: each step is seen
    body = api_as(alice).post("/api/materials/", {"file": files(3)}, format="multipart").json()
    path = f"/ws/batches/{body['batch']['id']}/"

    @async_to_sync
    async def watch():
        communicator, _ = await connect(path, [await sync_to_async(token_header)(alice)])
        messages = [await communicator.receive_json_from(timeout=5)]
        for done in (1, 2):
            await sync_to_async(run_worker)(max_jobs=1)  # one file's job
            while messages[-1]["counts"]["complete"] < done:
                messages.append(await communicator.receive_json_from(timeout=10))
        await sync_to_async(run_worker)(max_jobs=1)  # the last file
        rest, code = await follow(communicator, timeout=10)
        return messages + rest, code

    messages, code = watch()
    assert messages[0]["type"] == "snapshot" and messages[0]["progress"] == 0 and messages[0]["state"] == "running"
    progress = [m["progress"] for m in messages]
    assert progress == sorted(progress), "aggregate progress never goes back"
    assert 33.3 in progress and 66.7 in progress
    final = messages[-1]
    assert final["type"] == "finished" and final["progress"] == 100 and final["state"] == "complete"
    assert final["counts"]["complete"] == 3 and final["callbacks"]["on_complete"]
    assert code == 1000
    assert [m["type"] for m in messages].count("finished") == 1
    callback = Job.objects.get(pk=final["callbacks"]["on_complete"])
    assert callback.type == sets.SET_DONE and callback.status == Status.QUEUED


def test_a_file_sent_again_in_a_later_set_is_answered_there_and_stays_in_its_first(api_as, alice, run_worker):
    client = api_as(alice)

    def upload(*named: tuple[str, bytes]) -> dict:
        response = client.post(
            "/api/materials/", {"file": [SimpleUploadedFile(n, d) for n, d in named]}, format="multipart"
        )
        assert response.status_code == 201, response.content
        return response.json()

    first = upload(("a.txt", b"alpha text"), ("b.txt", b"beta text"))
    run_worker()
    second = upload(("a.txt", b"alpha text"), ("c.txt", b"gamma text"))
    assert sorted(m["name"] for m in second["materials"]) == ["a.txt", "c.txt"]
    assert second["batch"]["total"] == 1  # the known file gets no new job
    members = {
        s: set(Material.objects.filter(upload_set=s).values_list("name", flat=True))
        for s in (first["material_set"], second["material_set"])
    }
    assert members == {first["material_set"]: {"a.txt", "b.txt"}, second["material_set"]: {"c.txt"}}
    # Uploaded alone before, a file stays in no set: its job is in no set's batch.
    alone = client.post("/api/materials/", {"file": SimpleUploadedFile("d.txt", b"delta text")}, format="multipart")
    assert alone.status_code == 201, alone.content
    upload(("d.txt", b"delta text"), ("e.txt", b"epsilon text"))
    assert Material.objects.get(name="d.txt").upload_set is None
