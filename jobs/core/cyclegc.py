"""Python's cyclic garbage collector, paused while a bulk submit builds its jobs.

CPython's collector runs its oldest generation when the objects that survived the
younger ones have grown by a quarter, and each such pass walks every tracked object of
the process: Django's, the apps', the libraries'. A bulk submit of 5,000 jobs builds
hundreds of thousands of objects that live until it returns (rows, RQ jobs, JSON), which
set off five of those passes: 0.6 s of its 2.4 s (in a process that has not frozen its
start-up objects, below). What it builds is not cyclic garbage, so pausing the
collector loses nothing meanwhile (reference counting still frees everything else at
once); the next pass after it finds what is left.

The collector is one per process, so a pause is too: the threads of a web process that
submit bulks at once share it, and it ends when the last of them ends. Two limits keep a
pause from outliving its purpose:

* bulks that overlap without a break (a web process under a stream of them) get a full
  collection every ``LONGEST_PAUSE`` seconds all the same, so cycles made meanwhile by
  any thread are freed;
* a pause is owned by its thread. An exception raised by a signal (a job's timeout, a
  lost lease: both raised in a worker's main thread, where an inline job runs) can land
  between a pause's steps and leave it open: the worker drops whatever its thread left
  open after each inline job (``release_thread``). A forked child keeps only the pauses
  of the thread that forked.

The web process also freezes its start-up objects (``gc.freeze`` in config/asgi.py), so
each later pass walks less. A worker does not: its steady state sets off a pass of the
oldest generation about once per thousand jobs (3 ms in all, measured), and the freeze
cost 70 ms at its start to save nothing there.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator

LONGEST_PAUSE = 5.0  # seconds the collector stays off before overlapping pauses let it run once

_lock = threading.Lock()
_open: collections.Counter[int] = collections.Counter()  # thread id → pauses it has open
_resume = False  # was the collector on before the first open pause began?
_off_since = 0.0  # when it was last turned off, or last run during a pause


@contextlib.contextmanager
def paused(when: bool = True) -> Iterator[None]:
    """Stop the cyclic collector for the block; it starts again when the last open
    pause of any thread ends, if it was on before the first began."""
    if not when:
        yield
        return
    _begin()
    try:
        yield
    finally:
        _end()


def release_thread() -> None:
    """Drop every pause this thread left open (none, unless an exception raised by a
    signal interrupted one); the collector starts again if no other thread holds one."""
    with _lock:
        if _open.pop(threading.get_ident(), None):
            _settle()


def _begin() -> None:
    global _resume, _off_since
    with _lock:
        if not _open:
            _resume = gc.isenabled()
            _off_since = time.monotonic()
        _open[threading.get_ident()] += 1
        gc.disable()


def _end() -> None:
    global _off_since
    with _lock:
        me = threading.get_ident()
        _open[me] -= 1
        if _open[me] <= 0:
            del _open[me]
        _settle()
        overdue = bool(_open) and _resume and time.monotonic() - _off_since > LONGEST_PAUSE
        if overdue:
            _off_since = time.monotonic()
    if overdue:
        gc.collect()  # runs even while disabled; outside the lock, so the others go on


def _settle() -> None:
    """After a pause ended: the collector on again if no pause is left open and it was
    on before the first began (never otherwise: a program may keep it off itself)."""
    global _resume
    if not _open and _resume:
        gc.enable()
        _resume = False


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in the child, and the lock may have been held by
    # another one when it forked.
    global _lock
    _lock = threading.Lock()
    if not _open:
        return
    mine = _open.get(threading.get_ident(), 0)
    _open.clear()
    if mine:
        _open[threading.get_ident()] = mine
    _settle()


os.register_at_fork(after_in_child=_after_fork_in_child)
