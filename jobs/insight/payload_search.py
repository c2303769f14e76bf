"""Finding jobs by a value in their payload (a customer id, an order number): what the
console's search box adds to its other matches.

A substring of the payload's JSON text, case-insensitive: ``UPPER(text) LIKE
UPPER('%term%')`` over ``PayloadText``, the payload's text kept in a table of its own
(written once with the job: an index on the job's row would be written again at every
move of the job). On PostgreSQL a trigram GIN index on exactly that expression
(migration 0017, ``pg_trgm``) answers it without reading the rows; chosen over
``jsonb_path_ops`` containment because an operator types a fragment of a value without
knowing its key or its JSON type (``"A-1042"`` or ``1042``), and containment needs both.
A trigram index can't narrow a term shorter than 3 characters, so shorter terms don't
search payloads. On SQLite the same condition is a scan of that table.

A condition on another table can't join the job's own conditions in one index scan (a
search also matches the type, the key, the error message), so the payloads are asked
first, for up to ``MANY`` jobs: a rare value (an order number) comes back as those jobs'
ids, looked up by key beside the other conditions; a common one (a key's name, a word in
most payloads) is looked up per job instead, as the list walks the jobs in its order —
either way about 15–60 ms at a million jobs (bench/admin.py), where one plan for both
took seconds for one of them.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from jobs.core.models import PayloadText

MIN_LENGTH = 3  # trigrams: a shorter term would read the whole index
MANY = 1000  # payload matches from which a term is common (found per job, not by ids)


def matching(jobs: QuerySet, term: str, other: Q | None = None) -> QuerySet:
    """``jobs`` whose payload contains ``term`` (or that match ``other``)."""
    condition = other if other is not None else Q(pk__in=[])
    if len(term) >= MIN_LENGTH:
        condition |= _in_payload(term, jobs.db)
    return jobs.filter(condition)


def _in_payload(term: str, using: str) -> Q:
    found = PayloadText.objects.using(using).filter(text__icontains=term)
    ids = list(found.order_by().values_list("job_id", flat=True)[:MANY])
    if len(ids) < MANY:
        return Q(pk__in=ids)  # a rare value: its jobs by key
    return Q(Exists(found.filter(job=OuterRef("pk"))))  # a common one: asked of each job the list reads
