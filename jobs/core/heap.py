"""The interpreter's cyclic garbage collector, paused while a bulk submit builds.

CPython's collector runs its oldest generation when the objects that survived the
younger ones have grown by a quarter, and each such pass walks every tracked object of
the process: Django's, the apps', the libraries'. A bulk submit of 5,000 jobs builds
hundreds of thousands of objects that live until it returns (rows, RQ jobs, JSON), which
set off five of those passes: 0.6 s of its 2.4 s (in a process that has not frozen its
start-up objects, below). What it builds is not cyclic garbage, so pausing the
collector loses nothing meanwhile (reference counting still frees everything else at
once); the next pass after it finds what is left.

The web process also freezes its start-up objects (``gc.freeze`` in config/asgi.py), so
each later pass walks less. A worker does not: its steady state sets off a pass of the
oldest generation about once per thousand jobs (3 ms in all, measured), and the freeze
cost 70 ms at its start to save nothing there.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pausers = 0  # callers inside ``paused`` (threads of one web process may overlap)
_was_enabled = False


@contextlib.contextmanager
def paused(when: bool = True) -> Iterator[None]:
    """Stop the cyclic collector for the block (and start it again after the last of
    the overlapping blocks ends, if it was running before the first began)."""
    if not when:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _pausers, _was_enabled
    with _lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1


def _leave() -> None:
    global _pausers
    with _lock:
        _pausers -= 1
        if _pausers == 0 and _was_enabled:
            gc.enable()
