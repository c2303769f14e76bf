"""Job sizes: how much work a job is, in its type's unit (e.g. a document's bytes).

ETAs count the line by type and *size class* rather than reading every job's size: the
classes are a quarter of a doubling apart, so a class's representative size is within
9 % of any job in it.
"""

from __future__ import annotations

import math

CLASSES_PER_DOUBLING = 4


def size_class(size: float | None) -> int | None:
    if size is None:
        return None
    return round(CLASSES_PER_DOUBLING * math.log2(max(1.0, float(size))))


def representative_size(klass: int | None) -> float | None:
    return None if klass is None else 2.0 ** (klass / CLASSES_PER_DOUBLING)
