from django.core.management.base import BaseCommand

from jobs.core.models import Schedule
from jobs.upkeep import schedules


class Command(BaseCommand):
    help = (
        "Sync the code's cron entries into the schedules operators see (idempotent; entries removed from the code "
        "disappear, operators' edits are kept). The scheduler also does this on start and every minute."
    )

    def handle(self, *args, **options):
        result = schedules.sync_from_code()
        forgotten = schedules.forget_legacy_timers()
        names = ", ".join(Schedule.objects.values_list("name", flat=True)) or "none"
        self.stdout.write(f"schedules: {names}")
        for what in ("added", "changed", "removed"):
            if result[what]:
                self.stdout.write(f"{what}: {', '.join(result[what])}")
        if forgotten:
            self.stdout.write(f"dropped {forgotten} rq-scheduler cron entries of an older Jobdesk")
