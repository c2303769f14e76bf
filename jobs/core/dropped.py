"""Live messages that did not reach a follower, counted where each was dropped.

A job's events reach its followers through several hands, and each may drop a message
without telling anyone: the relay's buffer in the sending process, channels-redis's
channel in Redis (full: the message is not added), channels-redis's queue inside the
web process (full: the oldest goes), and a follower that finds a ``seq`` missing. Each
counts here, per process, and the counts are added to one Redis hash (``KEY``) by a
timer thread at most once a second — never on the caller's path, never failing it
(Redis down: the counts wait for the next flush). ``totals()`` reads the sums of every
process: the metrics (``jobdesk_live_dropped_total``) and ``bench/ws.py`` print them.
"""

from __future__ import annotations

import collections
import os
import threading

KEY = "jobdesk:live:dropped"
LAYERS = {
    "relay_buffer": "a sending process's relay buffer was full (its oldest message went)",
    "relay_down": "the channel layer was unreachable or a send to it failed",
    "layer_full": "a web process's channel in Redis was full (channels-redis did not add the message)",
    "web_queue": "a follower's queue in its web process was full (channels-redis dropped the oldest)",
    "follower_gap": "events a follower found missing by seq (each answered at once with a snapshot)",
}
_FLUSH_EVERY = 1.0  # seconds: counts are added to Redis at most this often per process
_RETRY_AFTER = 5.0  # seconds after a failed flush

_lock = threading.Lock()
_pending: collections.Counter[str] = collections.Counter()
_timer: threading.Timer | None = None


def _forget_in_child() -> None:
    # A work-horse forked while the relay's thread held the lock would wait on it forever;
    # and the counts it inherits are its parent's to add (a horse's exit flushes, and
    # added there too, they counted twice). Its own timer starts with its first count.
    global _lock, _timer
    _lock = threading.Lock()
    _pending.clear()
    _timer = None


os.register_at_fork(after_in_child=_forget_in_child)


def count(layer: str, n: int = 1) -> None:
    """Count ``n`` messages dropped at ``layer`` (one of ``LAYERS``); returns at once."""
    global _timer
    if n <= 0:
        return
    with _lock:
        _pending[layer] += n
        if _timer is None:
            _timer = threading.Timer(_FLUSH_EVERY, _flush_soon)
            _timer.daemon = True
            _timer.start()


def flush() -> bool:
    """Add this process's counts to Redis now; False (they are kept) when it failed."""
    from redis.exceptions import RedisError

    from jobs.core import queueing

    with _lock:
        counts = dict(_pending)
        _pending.clear()
    if not counts:
        return True
    try:
        pipe = queueing.connection().pipeline(transaction=False)
        for layer, n in counts.items():
            pipe.hincrby(KEY, layer, n)
        pipe.execute()
        return True
    except (RedisError, OSError):
        with _lock:
            _pending.update(counts)
        return False


def _flush_soon() -> None:
    global _timer
    done = flush()
    with _lock:
        _timer = None
        if _pending:  # counted meanwhile, or this flush failed: try again later
            _timer = threading.Timer(_FLUSH_EVERY if done else _RETRY_AFTER, _flush_soon)
            _timer.daemon = True
            _timer.start()


def totals() -> dict[str, int]:
    """Every process's counts so far (those still waiting for their flush excepted)."""
    from jobs.core import queueing

    stored = queueing.connection().hgetall(KEY)
    found = {key.decode(): int(value) for key, value in stored.items()}
    return {layer: found.get(layer, 0) for layer in LAYERS}


def reset() -> None:
    """Forget every count (a benchmark's fresh start)."""
    from jobs.core import queueing

    with _lock:
        _pending.clear()
    queueing.connection().delete(KEY)
