import json
import math

from django.core.management.base import BaseCommand, CommandError

from jobs.upkeep import reconcile

MAX_GRACE = 86_400  # a day; nan, inf or 1e12 made the cut-off a date no calendar holds (a traceback)


class Command(BaseCommand):
    help = "Compare the database with Redis once and repair what is missing or lost; print the repairs."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace", type=float, default=None, help=f"spare rows changed this many seconds ago (0 to {MAX_GRACE:,})"
        )

    def handle(self, *args, grace, **options):
        if grace is not None and not (math.isfinite(grace) and 0 <= grace <= MAX_GRACE):
            raise CommandError(f"--grace {grace}: give a number of seconds from 0 to {MAX_GRACE:,}.")
        report = reconcile.run(grace_seconds=grace)
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
