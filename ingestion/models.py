"""Uploaded documents and the chunks their processing produces."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class MaterialSet(models.Model):
    """Several files uploaded in one request: processed as one batch of jobs, whose
    on_complete callback records the set as done (``ingestion.sets``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="material_sets")
    batch_id = models.UUIDField(null=True, blank=True, help_text="the batch of its files' jobs")
    done_at = models.DateTimeField(null=True, blank=True, help_text="every file's job ended")
    summary = models.JSONField(default=dict, blank=True, help_text="the batch's counts when it ended")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload set {self.id}"


class Material(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="materials")
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, help_text="detected from the content, not the name")
    size = models.BigIntegerField(help_text="bytes")
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to="materials/", max_length=300)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UPLOADED)
    # The job that processes it now (a reprocess replaces it); hooks act only for this one.
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    upload_set = models.ForeignKey(
        MaterialSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="materials"
    )
    pages = models.PositiveIntegerField(null=True, blank=True)
    lines = models.PositiveIntegerField(null=True, blank=True)
    words = models.PositiveIntegerField(null=True, blank=True)
    characters = models.PositiveIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The same owner uploading the same bytes gets the existing material.
            models.UniqueConstraint(fields=["owner", "sha256"], name="material_owner_sha256"),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="material_owner_created"),
            models.Index(fields=["status", "created_at"], name="material_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}]"


class MaterialChunk(models.Model):
    material = models.ForeignKey(Material, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    start = models.PositiveIntegerField(help_text="character offset in the extracted text")
    end = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True, help_text="PDF page the chunk starts on")

    class Meta:
        ordering = ["material", "index"]
        constraints = [models.UniqueConstraint(fields=["material", "index"], name="chunk_material_index")]

    def __str__(self) -> str:
        return f"{self.material_id} #{self.index}"
