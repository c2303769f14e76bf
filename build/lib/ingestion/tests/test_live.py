"""``/ws/materials/<id>/``: a material's owner follows its processing live."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.live.tests.test_websockets import close_code, connect, follow, token_header

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def uploaded(api_as, user) -> dict:
    text = ("A sentence about materials. " * 40 + "\n\n") * 30
    response = api_as(user).post(
        "/api/materials/", {"file": SimpleUploadedFile("notes.txt", text.encode())}, format="multipart"
    )
    assert response.status_code == 201, response.content
    return response.data


def test_the_owner_follows_processing_to_the_end_and_others_are_refused(api_as, alice, bob, run_worker, settings):
    settings.PROGRESS_WRITE_INTERVAL = 0
    material = uploaded(api_as, alice)
    path = f"/ws/materials/{material['id']}/"

    @async_to_sync
    async def watch():
        bobs = [await sync_to_async(token_header)(bob)]
        refused = {
            "bob": await close_code(path, bobs),
            "unknown": await close_code(f"/ws/materials/{material['job']['id']}/", bobs),
        }
        communicator, _ = await connect(path, [await sync_to_async(token_header)(alice)])
        snapshot = await communicator.receive_json_from(timeout=5)
        await sync_to_async(run_worker)()
        rest, code = await follow(communicator)
        return refused, [snapshot, *rest], code

    refused, messages, code = watch()
    assert refused == {"bob": 4403, "unknown": 4404}
    assert messages[0]["type"] == "snapshot" and messages[0]["status"] == "queued"
    assert {m["material_id"] for m in messages} == {material["id"]}
    assert {m["job_id"] for m in messages} == {str(material["job"]["id"])}
    assert "progress" in [m["type"] for m in messages], "extraction and chunking report their stages"
    assert messages[-1]["type"] == "completed" and code == 1000
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs))
