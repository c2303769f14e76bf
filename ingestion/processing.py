"""The ingestion job type, its completion hooks and its cleanup cron, registered with
the jobs platform. ``jobs`` never imports this module: the app's
``ready()`` does, and the registry does the rest."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ingestion.budget import Budget
from ingestion.chunking import Chunk, split
from ingestion.detect import NotSupported
from ingestion.extract import extract
from ingestion.models import Material, MaterialChunk
from jobs import (
    FINAL_STATUSES,
    UNFINISHED_STATUSES,
    ActionRefused,
    AdminRequiredError,
    Job,
    Priority,
    SubmitError,
    UserFixableError,
    cancel,
    cron,
    job_type,
    subject_field,
)

logger = logging.getLogger("ingestion")

PROCESS = "ingestion.process_material"
CLEANUP = "ingestion.cleanup"
_CHUNK_BATCH = 1000


def validate_payload(payload: dict) -> dict:
    if set(payload) != {"material_id"}:
        raise SubmitError("The payload is exactly {'material_id': <uuid>}.", field="payload")
    try:
        return {"material_id": str(uuid.UUID(str(payload["material_id"])))}
    except ValueError:
        raise SubmitError("material_id is not a UUID.", field="payload.material_id") from None


# --- Completion hooks: idempotent, and only for the material's current job --


def material_ready(job: Job) -> None:
    result = job.result or {}
    _current(job).update(
        status=Material.Status.READY,
        content_type=result.get("content_type", ""),
        pages=result.get("pages"),
        lines=result.get("lines"),
        words=result.get("words"),
        characters=result.get("characters"),
        chunk_count=result.get("chunks"),
        error="",
        updated_at=timezone.now(),
    )


def material_failed(job: Job) -> None:
    reason = job.error_message or f"processing ended {job.status}"
    _current(job).update(status=Material.Status.FAILED, error=reason, updated_at=timezone.now())


def _current(job: Job):
    """The material this job processes, if the job is still the material's current one
    (a reprocess replaces it, and the old job's outcome must not overwrite the new)."""
    return Material.objects.filter(pk=job.payload.get("material_id"), job_id=job.id)


# --- The job ----------------------------------------------------------------------


@job_type(
    PROCESS, public=False, max_attempts=3, timeout=1800, validate=validate_payload,
    subjects=lambda payload: {"material_id": payload.get("material_id")},
    on_success=material_ready, on_failure=material_failed,
)  # fmt: skip
def process_material(ctx) -> dict:
    material = _start(ctx)
    ctx.progress(5, "detecting the type and extracting text", size=material.size)
    try:
        with _open(material) as stored:
            extracted = extract(
                stored, material.name, on_page=lambda done, total: _page_done(ctx, done, total), budget=budget()
            )
    except NotSupported as problem:
        raise UserFixableError(problem.message, recovery_actions=[problem.hint]) from None
    ctx.progress(75, "splitting into chunks and saving them", characters=len(extracted.text))
    chunks = split(extracted.text, extracted.page_starts, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP)
    saved = _replace_chunks(material, ctx.job.id, chunks)
    result = {**extracted.statistics(), "chunks": saved, "content_type": extracted.content_type}
    if extracted.encoding:
        result["encoding"] = extracted.encoding
    ctx.progress(100, "done", **result)
    return result


def budget() -> Budget:
    """The limits on reading one file, from the settings (EXTRACT_*)."""
    return Budget(
        max_pages=settings.EXTRACT_MAX_PAGES,
        max_stream_bytes=settings.EXTRACT_MAX_STREAM_BYTES,
        max_document_bytes=settings.EXTRACT_MAX_DOCUMENT_BYTES,
        text_per_byte=settings.EXTRACT_MAX_TEXT_PER_BYTE,
        max_text=settings.EXTRACT_MAX_TEXT,
        max_nesting=settings.EXTRACT_MAX_NESTING,
        max_seconds=settings.EXTRACT_MAX_SECONDS,
    )


def _page_done(ctx, done: int, total: int) -> None:
    ctx.progress(5 + 65 * done / total, "extracting text", page=done, pages=total)


def _start(ctx) -> Material:
    material_id = ctx.payload["material_id"]
    if not Material.objects.filter(pk=material_id, job_id=ctx.job.id).update(status=Material.Status.PROCESSING):
        raise UserFixableError(
            "The material was deleted, or another job processes it now.",
            recovery_actions=["Nothing to do: see the material's current job."],
        )
    return Material.objects.get(pk=material_id)


def _open(material: Material):
    try:
        return material.file.open("rb")
    except FileNotFoundError:
        raise AdminRequiredError(
            f"The stored file {material.file.name} is missing.",
            recovery_actions=["Restore the file from backup, or delete the material and upload it again."],
        ) from None


def _replace_chunks(material: Material, job_id, chunks: Iterable[Chunk]) -> int:
    """All chunks of this run or none: a re-run never leaves duplicates or a half set."""
    saved = 0
    with transaction.atomic():
        if not Material.objects.select_for_update().filter(pk=material.pk, job_id=job_id).exists():
            raise UserFixableError("The material was deleted or reprocessed meanwhile.")
        MaterialChunk.objects.filter(material=material).delete()
        chunks = iter(chunks)
        while batch := list(itertools.islice(chunks, _CHUNK_BATCH)):
            MaterialChunk.objects.bulk_create(
                MaterialChunk(material=material, index=c.index, text=c.text, start=c.start, end=c.end, page=c.page)
                for c in batch
            )
            saved += len(batch)
    return saved


# --- Cleanup: 08:00 UTC -----------------------------------------------------


@job_type(CLEANUP, public=False, priority=Priority.LOW, max_attempts=2, timeout=1800)
def cleanup(ctx) -> dict:
    """Delete materials still not ready MATERIAL_RETENTION_DAYS after upload — and not
    touched since (a reprocess of an old material restarts the clock) — with their chunks
    and files. A material whose job is still waiting or running is left to it."""
    cutoff = timezone.now() - timedelta(days=settings.MATERIAL_RETENTION_DAYS)
    stale = (
        Material.objects.filter(created_at__lt=cutoff, updated_at__lt=cutoff)
        .exclude(status=Material.Status.READY)
        .exclude(job__status__in=UNFINISHED_STATUSES)
    )
    deleted = 0
    for material in stale.iterator():
        delete_material(material, reason="not ready after the retention period")
        deleted += 1
    return {"deleted": deleted, "cutoff": cutoff.isoformat()}


def delete_material(material: Material, *, reason: str) -> None:
    """Cancel its unfinished job, then delete it; its chunks go with it, its file once
    the deletion is committed (``forget_file``)."""
    if material.job_id:
        try:
            if Job.objects.filter(pk=material.job_id).exclude(status__in=FINAL_STATUSES).exists():
                cancel(material.job_id, reason=f"material deleted: {reason}")
        except ActionRefused:
            pass  # it ended meanwhile
    material.delete()


def forget_file(sender, instance: Material, **kwargs) -> None:
    """post_delete: however a material goes (cleanup, admin, its owner deleted), its
    stored file goes once the deletion is committed."""
    name = instance.file.name
    if name:
        transaction.on_commit(lambda: delete_stored_file(name))


def delete_stored_file(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        logger.warning("could not delete stored file %s", name)


cron(CLEANUP, "0 8 * * *", CLEANUP)
# Live messages of every job carry the material it processes (None for other jobs), and
# followers of one material (/ws/materials/<id>/) get its job's events.
subject_field("material_id")
