"""``/ws/materials/<id>/``: follow a material's processing job, for its owner
and staff. The same protocol as ``/ws/jobs/<id>/``; messages carry ``material_id``."""

from __future__ import annotations

import uuid

from ingestion.models import Material
from jobs import (
    FORBIDDEN,
    NOT_FOUND,
    FollowConsumer,
    Refused,
    gone_snapshot,
    job_snapshot,
    may_see,
    parse_uuid,
    subject_group,
)


class MaterialConsumer(FollowConsumer):
    def locate(self, user) -> tuple[str, uuid.UUID | None]:
        self.material_id = parse_uuid(self.scope["url_route"]["kwargs"]["material_id"])
        material = Material.objects.filter(pk=self.material_id).values("owner_id", "job_id").first()
        if material is None:
            raise Refused(NOT_FOUND)
        if not may_see(user, material["owner_id"], "ingestion.material"):
            raise Refused(FORBIDDEN)
        return subject_group("material_id", self.material_id), material["job_id"]

    def snapshot(self) -> dict:
        # Its current job: a reprocess since the connection replaced it.
        self.job_id = Material.objects.filter(pk=self.material_id).values_list("job_id", flat=True).first()
        found = job_snapshot(self.job_id) if self.job_id else None
        return found or {**gone_snapshot(self.job_id), "material_id": str(self.material_id)}
