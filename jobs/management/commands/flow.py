"""Flow control from a shell: ``manage.py flow`` shows the levers; ``pause``/``resume``
a queue or type; ``limit`` a type's concurrency or rate; ``reset`` it to the code's."""

from __future__ import annotations

import getpass
import socket

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.core import flow
from jobs.core.errors import SubmitError

KINDS = ("queue", "type")
NO_LIMIT = "none"


class Command(BaseCommand):
    help = (
        "Show or move the flow-control levers. Examples: `flow`, `flow pause queue low --reason 'db work'`, "
        "`flow resume type reports.daily`, `flow limit reports.daily --concurrency 2 --rate 100/minute`, "
        "`flow reset reports.daily`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb")
        for verb in ("pause", "resume"):
            sub = verbs.add_parser(verb, help=f"{verb} a queue or a job type")
            sub.add_argument("kind", choices=KINDS)
            sub.add_argument("name")
            sub.add_argument("--reason", default="")
        limit = verbs.add_parser("limit", help="set a type's limits (kept until `reset`)")
        limit.add_argument("name")
        limit.add_argument("--concurrency", help=f"jobs active at once, or {NO_LIMIT!r}")
        limit.add_argument("--rate", help=f'starts per period, e.g. "100/minute", or {NO_LIMIT!r}')
        limit.add_argument("--reason", default="")
        reset = verbs.add_parser("reset", help="a type's limits back to its code's")
        reset.add_argument("name")
        reset.add_argument("--reason", default="")

    def handle(self, *args, verb: str | None = None, **options) -> None:
        by = {"actor_label": f"manage.py flow ({getpass.getuser()}@{socket.gethostname()})"}
        try:
            if verb in ("pause", "resume"):
                move = flow.pause if verb == "pause" else flow.resume
                move(options["kind"], options["name"], reason=options["reason"], **by)
            elif verb == "limit":
                flow.set_limits(options["name"], **_limits(options), reason=options["reason"], **by)
            elif verb == "reset":
                flow.reset_limits(options["name"], reason=options["reason"], **by)
        except SubmitError as error:
            raise CommandError(f"{error} {error.hint}".strip()) from None
        self._show()

    def _show(self) -> None:
        for queue in flow.describe_queues():
            self.stdout.write(f"queue {queue['name']:<10} {_pause_text(queue)}")
        types = flow.describe_types()
        width = max((len(t["name"]) for t in types), default=0)  # the longest name sets the column
        for job_type in types:
            limits = f"concurrency {job_type['concurrency'] or '-'} ({job_type['concurrency_from']}), "
            limits += f"rate {job_type['rate'] or '-'} ({job_type['rate_from']})"
            held = sum(job_type["held"].values())
            stopping = f" (+{job_type['stopping']} stopping)" if job_type["stopping"] else ""
            self.stdout.write(
                f"type  {job_type['name']:<{width}} {_pause_text(job_type)}  {limits}  "
                f"active {job_type['active']}{stopping}  held {held}"
            )


def _pause_text(lever: dict) -> str:
    if not lever["paused"]:
        return "running"
    by = f" by {lever['paused_by']}" if lever["paused_by"] else ""
    why = f": {lever['paused_reason']}" if lever["paused_reason"] else ""
    return f"PAUSED{by}{why}"


def _limits(options: dict) -> dict:
    limits: dict = {}
    if options["concurrency"] is not None:
        text = options["concurrency"]
        if text == NO_LIMIT:
            limits["concurrency"] = None
        elif text.isascii() and text.isdigit() and len(text) <= 9:  # int() refuses 4,300+ digits
            limits["concurrency"] = int(text)
        else:
            raise CommandError(f"--concurrency {text!r}: give a whole number of at least 1, or {NO_LIMIT!r}.")
    if options["rate"] is not None:
        limits["rate"] = "" if options["rate"] == NO_LIMIT else options["rate"]
    if not limits:
        raise CommandError("Nothing to change: give --concurrency, --rate or both.")
    return limits
