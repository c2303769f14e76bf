from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from jobs.core.models import Schedule
from jobs.upkeep import schedules


class Command(BaseCommand):
    help = (
        "Sync the code's cron entries into the schedules operators see (idempotent; entries removed from the code "
        "disappear, operators' edits are kept). The scheduler also does this on start and every minute."
    )

    def handle(self, *args, **options):
        result = schedules.sync_from_code()
        names = ", ".join(Schedule.objects.values_list("name", flat=True)) or "none"
        self.stdout.write(f"schedules: {names}")
        for what in ("added", "changed", "removed"):
            if result[what]:
                self.stdout.write(f"{what}: {', '.join(result[what])}")
        try:
            forgotten = schedules.forget_legacy_timers()
        except (OSError, RedisError) as error:
            # The schedules are in the database already; only the old entries in Redis
            # were not looked at. One line, not a traceback.
            raise CommandError(
                f"Redis is unreachable ({error}): the schedules above are synced, but the rq-scheduler entries of an "
                "older Jobdesk were not checked. Start the Redis that REDIS_URL names and run this again, or let the "
                "scheduler do it when it starts."
            ) from None
        if forgotten:
            self.stdout.write(f"dropped {forgotten} rq-scheduler cron entries of an older Jobdesk")
