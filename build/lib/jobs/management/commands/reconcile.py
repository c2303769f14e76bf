import json

from django.core.management.base import BaseCommand

from jobs.upkeep import reconcile


class Command(BaseCommand):
    help = "Compare the database with Redis once and repair what is missing or lost; print the repairs."

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=float, default=None, help="spare rows changed this many seconds ago")

    def handle(self, *args, grace, **options):
        report = reconcile.run(grace_seconds=grace)
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
