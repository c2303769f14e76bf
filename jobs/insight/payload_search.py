"""Finding jobs by a value in their payload (a customer id, an order number): what the
console's search box adds to its other matches.

A substring of the payload's JSON text, case-insensitive: ``UPPER(text) LIKE
UPPER('%term%')`` over ``PayloadText``, the payload's text kept in a table of its own
(written once with the job: an index on the job's row would be written again at every
move of the job). On PostgreSQL a trigram GIN index on exactly that expression
(migration 0016, ``pg_trgm``) answers it without reading the rows; chosen over
``jsonb_path_ops`` containment because an operator types a fragment of a value without
knowing its key or its JSON type (``"A-1042"`` or ``1042``), and containment needs both.
A trigram index can't narrow a term shorter than 3 characters, so shorter terms don't
search payloads. On SQLite the same condition is a scan of that table.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from jobs.core.models import Job, PayloadText

MIN_LENGTH = 3  # trigrams: a shorter term would read the whole index


def matching(jobs: QuerySet, term: str, other: Q | None = None) -> QuerySet:
    """``jobs`` whose payload contains ``term`` (or that match ``other``). The two are
    found apart and their ids put together (a UNION): an OR of a condition on the job
    and one on another table would have the database read every job."""
    if len(term) < MIN_LENGTH:
        return jobs.filter(other if other is not None else Q(pk__in=[]))
    by_payload = PayloadText.objects.filter(text__icontains=term).order_by().values("job_id")
    if other is None:
        return jobs.filter(pk__in=by_payload)
    by_other = Job.objects.filter(other).order_by().values("pk")
    return jobs.filter(pk__in=by_other.union(by_payload))
