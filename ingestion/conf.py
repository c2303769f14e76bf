"""Ingestion's settings and their defaults, for a project that does not set them (this
project sets each from the environment: config/settings.py)."""

from __future__ import annotations

from django.conf import settings

DEFAULTS = {
    "MAX_UPLOAD_BYTES": 50 * 1024 * 1024,
    "UPLOAD_FRAMING_BYTES": 64 * 1024,
    "HEAVY_MATERIAL_BYTES": 5 * 1024 * 1024,
    "CHUNK_SIZE": 1000,
    "CHUNK_OVERLAP": 200,
    "UPLOAD_RATE": "30/minute",
    "MATERIAL_RETENTION_DAYS": 7,
    "EXTRACT_MAX_PAGES": 10_000,
    "EXTRACT_MAX_SECONDS": 300.0,
    "EXTRACT_MAX_STREAM_BYTES": 32 * 1024 * 1024,
    "EXTRACT_MAX_DOCUMENT_BYTES": 256 * 1024 * 1024,
    "EXTRACT_MAX_TEXT_PER_BYTE": 100,
    "EXTRACT_MAX_TEXT": 128_000_000,
    "EXTRACT_MAX_NESTING": 2_000,
}


def apply_defaults() -> None:
    for name, value in DEFAULTS.items():
        if not hasattr(settings, name):
            setattr(settings, name, value)
    # The upload route's own request-body limit (apikit.bodylimit), unless the project set one.
    limits = getattr(settings, "BODY_LIMITS", None)
    if limits is None:
        limits = settings.BODY_LIMITS = {}
    limits.setdefault("/api/materials/", settings.MAX_UPLOAD_BYTES + settings.UPLOAD_FRAMING_BYTES)
