"""Taking documents in: limits, duplicates, backpressure, the job.

Every refusal happens before anything is stored: the size is checked from the request
headers and again while the body streams in, the type from the first bytes, the queue
depth before the file is written. A material, its file and its job are created
together or not at all.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import PurePath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import IntegrityError, transaction

from ingestion.detect import PDF, SUPPORTED_HINT, is_pdf, refuse_at_upload
from ingestion.models import Material
from ingestion.processing import PROCESS, delete_stored_file
from jobs import FINAL_STATUSES, Job, JobEvent, note, retry_after_backlog, submit

_SNIFF_BYTES = 8192


class UploadRefused(Exception):
    def __init__(self, status: int, code: str, message: str, hint: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.hint, self.retry_after = status, code, message, hint, retry_after


def _too_large() -> UploadRefused:
    limit_mb = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
    return UploadRefused(
        413, "too_large", f"The file is larger than the {limit_mb:g} MB limit.", "Split it, or ask an operator."
    )


def refuse_oversized_request(content_length: str | None) -> None:
    """Before the body is read: a declared length over the limit is refused at once."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return
    if declared > settings.MAX_UPLOAD_BYTES + settings.UPLOAD_FRAMING_BYTES:
        raise _too_large()


class SizeLimitHandler(FileUploadHandler):
    """While the body streams in: stop as soon as a file passes the limit (a client may
    send no length, or a wrong one). First in the handler list."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > settings.MAX_UPLOAD_BYTES:
            raise _too_large()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@dataclass
class Uploaded:
    material: Material
    created: bool


def check(file: UploadedFile, name: str | None) -> tuple[str, bytes]:
    """Refuse a file of an unsupported type or over the size limit; its clean name and
    first bytes."""
    name = _clean_name(name or file.name)
    head = _head(file)
    reason = refuse_at_upload(head, name)
    if reason:
        raise UploadRefused(415, "unsupported_file_type", reason, SUPPORTED_HINT)
    assert file.size is not None  # the upload handlers always give the size
    if file.size > settings.MAX_UPLOAD_BYTES:
        raise _too_large()
    return name, head


def upload(owner, file: UploadedFile, name: str | None = None, *, backlog_checked: bool = False) -> Uploaded:
    name, head = check(file, name)
    assert file.size is not None
    digest = _sha256(file)
    existing = Material.objects.filter(owner=owner, sha256=digest).first()
    if existing is not None:
        return Uploaded(existing, created=False)
    if not backlog_checked:
        refuse_when_backlogged()
    material = Material(owner=owner, name=name, content_type=_declared_type(head, name), size=file.size, sha256=digest)
    material.file.save(f"{owner.pk}/{material.id}{PurePath(name).suffix.lower()[:10]}", file, save=False)
    assert material.file.name is not None  # saving named it
    try:
        with transaction.atomic():
            material.save()
            _start_processing(material, owner)
    except IntegrityError:
        delete_stored_file(material.file.name)  # the same bytes, uploaded at the same moment: theirs won
        return Uploaded(Material.objects.get(owner=owner, sha256=digest), created=False)
    except BaseException:
        delete_stored_file(material.file.name)
        raise
    return Uploaded(material, created=True)


def reprocess(material: Material, actor) -> Material:
    """Run the processing again (e.g. after a fix or a settings change)."""
    with transaction.atomic():
        material = Material.objects.select_for_update().get(pk=material.pk)
        if material.job_id and Job.objects.filter(pk=material.job_id).exclude(status__in=FINAL_STATUSES).exists():
            raise UploadRefused(
                409, "conflict", "The material is being processed already.", "Wait for its current job to end."
            )
        refuse_when_backlogged()
        material.status, material.error = Material.Status.UPLOADED, ""
        material.save(update_fields=["status", "error", "updated_at"])
        _start_processing(material, material.owner)  # the owner's job, whoever asked
        note(material.job_id, "reprocess requested", actor=actor, kind=JobEvent.Kind.ACTION)
    return material


def _start_processing(material: Material, owner) -> None:
    # Sized by its bytes: its ETA learns this type's seconds per byte, so a 20 MB file
    # queued behind small ones is not taken to last as long as they do.
    job = submit(
        PROCESS, {"material_id": str(material.id)}, owner=owner,
        heavy=material.size > settings.HEAVY_MATERIAL_BYTES, size=material.size,
    ).job  # fmt: skip
    material.job = job
    material.save(update_fields=["job"])


def refuse_when_backlogged() -> None:
    """503 while more than QUEUE_MAX_DEPTH jobs wait in line, with a Retry-After of how
    long the workers need to bring the line back under the limit."""
    limit = settings.QUEUE_MAX_DEPTH
    wait = retry_after_backlog(limit, PROCESS)
    if wait is None:
        return
    raise UploadRefused(
        503, "overloaded", f"More than {limit} jobs are waiting; new uploads are paused.",
        f"Retry after {wait} seconds.", retry_after=wait,
    )  # fmt: skip


def _clean_name(name: str | None) -> str:
    cleaned = PurePath((name or "").replace("\\", "/")).name.strip().replace("\x00", "")
    return (cleaned or "upload")[:255]


def _head(file: UploadedFile) -> bytes:
    file.seek(0)
    head = file.read(_SNIFF_BYTES)
    file.seek(0)
    return head


def _sha256(file: UploadedFile) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    for block in file.chunks():
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()


def _declared_type(head: bytes, name: str) -> str:
    """Until the job has looked at the content: PDF by its bytes, else by the name."""
    if is_pdf(head):
        return PDF
    return mimetypes.guess_type(name)[0] or "text/plain"
