"""Every move a job can make, as data: from which statuses, to which, and what must
follow in Redis once it is committed.

``jobs.core.lifecycle`` performs the moves and reads their rules here; the console (which
buttons a job's state offers), the API's 409s (through ``TransitionError``) and the
tests read the same table, so what the system allows is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from jobs.core.models import FINAL_STATUSES, PENDING_STATUSES, Status


class FollowUp(Enum):
    """What the move asks of Redis after its transaction commits."""

    NONE = "none"  # nothing in Redis changes
    DISPATCH = "dispatch"  # put the new dispatch where the status says: a queue or the scheduler
    RETURN = "return"  # a held job back to the front of its queue: it had reached the head once
    REPLACE = "replace"  # withdraw the previous dispatch, then dispatch the new one
    STOP_OR_WITHDRAW = "stop_or_withdraw"  # a running dispatch is stopped, a waiting one withdrawn


@dataclass(frozen=True)
class Move:
    name: str
    sources: frozenset[str]  # statuses the move may start from
    targets: frozenset[str]  # statuses it may end in (the source itself for moves that keep it)
    follow_up: FollowUp = FollowUp.NONE
    by_worker: bool = False  # guarded by the dispatch id: only the run that claimed it may make it

    def allows(self, status: str | None) -> bool:
        return status in self.sources  # None (no job) allows nothing


CLAIMABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.RETRYING})
_ACTIVE = frozenset({Status.ACTIVE})

MOVES: dict[str, Move] = {
    move.name: move
    for move in [
        # The first status, decided at submit (no source: the row is new).
        Move(
            "submit",
            frozenset(),
            frozenset({Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.WAITING, Status.CANCELED}),
            FollowUp.DISPATCH,
        ),
        # A worker's run: claim, then exactly one outcome.
        Move("claim", CLAIMABLE, _ACTIVE, by_worker=True),
        Move("complete", _ACTIVE, frozenset({Status.COMPLETE}), by_worker=True),
        Move("fail", _ACTIVE, frozenset({Status.FAILED}), by_worker=True),
        Move("dead_letter", _ACTIVE, frozenset({Status.DEAD_LETTER}), by_worker=True),
        Move("retry_later", _ACTIVE, frozenset({Status.RETRYING}), FollowUp.DISPATCH, by_worker=True),
        Move("defer", _ACTIVE, frozenset({Status.DEFERRED}), FollowUp.DISPATCH, by_worker=True),
        # Flow control: a worker parks a job a lever says "not now" to (it stays queued, in
        # the database only, no attempt spent); the release pass sends it back.
        Move("hold", CLAIMABLE, frozenset({Status.QUEUED}), by_worker=True),
        Move("unhold", frozenset({Status.QUEUED}), frozenset({Status.QUEUED}), FollowUp.RETURN),
        # Operators and owners.
        Move("cancel", PENDING_STATUSES | _ACTIVE, frozenset({Status.CANCELED}), FollowUp.STOP_OR_WITHDRAW),
        Move(
            "requeue", FINAL_STATUSES - {Status.COMPLETE}, frozenset({Status.QUEUED, Status.WAITING}), FollowUp.DISPATCH
        ),
        Move("promote", CLAIMABLE | {Status.WAITING}, CLAIMABLE | {Status.WAITING}, FollowUp.REPLACE),
        Move("run_now", frozenset({Status.SCHEDULED, Status.RETRYING}), frozenset({Status.QUEUED}), FollowUp.REPLACE),
        # The system's own repairs and releases.
        Move("release", frozenset({Status.WAITING}), frozenset({Status.QUEUED, Status.SCHEDULED}), FollowUp.DISPATCH),
        Move("reschedule", frozenset({Status.DEFERRED}), frozenset({Status.DEFERRED, Status.QUEUED}), FollowUp.REPLACE),
        Move("redispatch", CLAIMABLE, CLAIMABLE, FollowUp.DISPATCH),
    ]
}


def move(name: str) -> Move:
    return MOVES[name]


def allowed(name: str, status: str | None) -> bool:
    """May a job in ``status`` make the move ``name``? (What the console's buttons ask.)"""
    return MOVES[name].allows(status)
