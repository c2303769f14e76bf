"""Jobdesk's HTTP routes, for a project's root URLconf:

    path("", include("jobs.urls")),  # before "admin/": it mounts django-rq's pages under it

The REST API under ``api/`` (jobs, queues, stats, health, work windows), ``metrics``
for Prometheus, and django-rq's raw queue pages under ``admin/django_rq/`` guarded by
the operators' permissions (the console itself is the Django admin)."""

from django.urls import include, path, re_path
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from jobs.api.metrics import metrics_view
from jobs.console.roles import guard_raw_queues

# django-rq's raw queue pages: changes to Redis only for operators who may act.
# Its stats and metrics pages too (django-rq offers no wrapper for them: they are wrapped
# here; their own RQ_API_TOKEN check still applies to callers who are not staff).
django_rq_urls = [
    re_path(p.pattern.regex.pattern, guard_raw_queues(p.callback), name=p.name) for p in get_api_urlpatterns()
] + get_admin_urlpatterns(view_wrapper=guard_raw_queues)

urlpatterns = [
    path("admin/django_rq/", include((django_rq_urls, "django_rq"))),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include("jobs.api.urls")),
]
