"""Several files in one upload: one set, one batch of processing jobs, one callback.

The set's files are processed as a batch (``jobs.batch``); its ``on_complete`` job —
submitted exactly once by Jobdesk when every file's job has ended — records the set as
done with the batch's counts."""

from __future__ import annotations

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from ingestion import uploads
from ingestion.models import Material, MaterialSet
from ingestion.processing import delete_stored_file
from jobs import Priority, batch, job_type

SET_DONE = "ingestion.set_done"
MAX_FILES = 20


def upload_many(owner, files: list[UploadedFile]) -> tuple[MaterialSet, list[uploads.Uploaded]]:
    """All the files or none: each is checked (type, size) before any is stored, and a
    failure part-way removes what was stored. Files already uploaded (the same bytes)
    are in the set with their existing material, and no new job."""
    if len(files) > MAX_FILES:
        raise uploads.UploadRefused(
            400, "too_many_files", f"At most {MAX_FILES} files per upload.", "Upload the rest in another request."
        )
    for file in files:
        uploads.check(file, file.name)
    uploads.refuse_when_backlogged()
    done: list[uploads.Uploaded] = []
    try:
        with transaction.atomic():
            material_set = MaterialSet.objects.create(owner=owner)
            with batch(
                owner=owner,
                description=f"{len(files)} files uploaded together",
                on_complete=SET_DONE,
                context={"material_set": str(material_set.id)},
            ) as made:
                for file in files:
                    done.append(uploads.upload(owner, file, backlog_checked=True))
            material_set.batch_id = made.id
            material_set.save(update_fields=["batch_id"])
            # A material is in the set it was uploaded with, its job in that set's batch:
            # one uploaded before (alone, or in another set) is answered among this set's
            # files, but stays where it was.
            Material.objects.filter(pk__in=[u.material.pk for u in done if u.created]).update(upload_set=material_set)
    except BaseException:
        for uploaded in done:
            if uploaded.created and uploaded.material.file.name:
                delete_stored_file(uploaded.material.file.name)
        raise
    return material_set, done


@job_type(SET_DONE, public=False, priority=Priority.NORMAL, max_attempts=3)
def set_done(ctx) -> dict:
    """A set's batch ended: record it (the batch's summary is the payload)."""
    summary = ctx.payload
    set_id = str((summary.get("context") or {}).get("material_set"))
    recorded = {"total": summary.get("total"), "counts": summary.get("counts"), "succeeded": summary.get("succeeded")}
    updated = MaterialSet.objects.filter(pk=set_id, done_at__isnull=True).update(
        done_at=timezone.now(), summary=recorded
    )
    return {"material_set": set_id, "recorded": bool(updated), **recorded}
