from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html_join

from workwindow import policy
from workwindow.models import WorkWindow

PREVIEW_OPENINGS = 5


@admin.register(WorkWindow)
class WorkWindowAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "time_zone", "start_time", "end_time", "weekdays", "next_openings"]
    list_filter = ["enabled", "time_zone"]
    readonly_fields = ["next_openings"]

    @admin.display(description=f"next {PREVIEW_OPENINGS} openings")
    def next_openings(self, window: WorkWindow) -> str:
        if window.pk is None:
            return "—"
        now = timezone.now()
        periods = policy.open_periods([window.as_policy()], now, now + policy.HORIZON)
        upcoming = [(o, c) for o, c in periods if c > now][:PREVIEW_OPENINGS]
        zone = window.as_policy().zone
        return (
            format_html_join("", "<div>{} → {}</div>", ((o.astimezone(zone), c.astimezone(zone)) for o, c in upcoming))
            or "never within a week"
        )
