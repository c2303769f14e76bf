from django.core.management.base import BaseCommand

from jobs.upkeep import crons


class Command(BaseCommand):
    help = "Register every cron entry in rq-scheduler (idempotent; drops entries removed from the code)."

    def handle(self, *args, **options):
        result = crons.sync()
        self.stdout.write(f"cron entries: {', '.join(result['registered']) or 'none'}")
        if result["removed"]:
            self.stdout.write(f"removed stale entries: {', '.join(result['removed'])}")
