"""Finding jobs by a value in their payload (a customer id, an order number): what the
console's search box adds to its other matches.

A substring of the payload's JSON text, case-insensitive: ``UPPER(payload::text) LIKE
UPPER('%term%')``. On PostgreSQL a trigram GIN index on exactly that expression
(migration 0009, ``pg_trgm``) answers it without reading the rows; chosen over
``jsonb_path_ops`` containment because an operator types a fragment of a value without
knowing its key or its JSON type (``"A-1042"`` or ``1042``), and containment needs both.
A trigram index can't narrow a term shorter than 3 characters, so shorter terms don't
search payloads. On SQLite the same condition is a scan of the table.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

MIN_LENGTH = 3  # trigrams: a shorter term would read the whole index


def matching(jobs: QuerySet, term: str, other: Q | None = None) -> QuerySet:
    """``jobs`` whose payload contains ``term`` (or that match ``other``)."""
    condition = other if other is not None else Q(pk__in=[])
    if len(term) >= MIN_LENGTH:
        jobs = jobs.alias(payload_text=Cast("payload", output_field=TextField()))
        condition |= Q(payload_text__icontains=term)
    return jobs.filter(condition)
