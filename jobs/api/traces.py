"""A client's trace continues into the jobs it submits: the W3C ``traceparent`` header of
a request becomes the parent of its submit span (jobs.core.tracing), when traces are on."""

from __future__ import annotations

from typing import Any

from jobs.core import tracing


class ContinuesCallersTrace:
    """A view mixin: the request's handling runs inside the caller's trace."""

    def dispatch(self, request, *args: Any, **kwargs: Any):
        with tracing.continuing(request.headers.get("traceparent")):
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
