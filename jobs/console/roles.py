"""The console's roles: two groups ``migrate`` keeps up to date, and the guard on
django-rq's raw pages. The rule itself (permissions for staff, ownership for everyone
else) is ``jobs.core.access``, shared with the API and the WebSockets.

"Operators" get every view, add and change permission of the project's own models (not
users, groups or API tokens; no deletes): they see and act on every job. "Operators
(read-only)" get the view permissions only: they see every page and change nothing,
through the console, the API or a socket. Ordinary users never get in (the admin wants
``is_staff``).
"""

from __future__ import annotations

import functools

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rq.exceptions import NoSuchJobError
from rq.job import JOB_ID_PATTERN
from rq.worker import Worker as RQWorker

from jobs.core import access

OPERATORS_GROUP = "Operators (read-only)"
ACTING_OPERATORS_GROUP = "Operators"
# Apps whose records a read-only operator must not browse (accounts, tokens, sessions).
PRIVATE_APPS = ("auth", "authtoken", "admin", "contenttypes", "sessions")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def may_act(user) -> bool:
    return access.acts_on_all(user)


def may_watch(user) -> bool:
    return access.sees_all(user)


def ensure_operators_group(**_signal_kwargs) -> None:
    """Create both groups and give them the permissions there are now (post_migrate: run
    after each migrate, so new models join them)."""
    from django.contrib.auth.models import Group, Permission

    ours = Permission.objects.exclude(content_type__app_label__in=PRIVATE_APPS)
    read_only, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
    read_only.permissions.add(*ours.filter(codename__startswith="view_"))
    acting, _ = Group.objects.get_or_create(name=ACTING_OPERATORS_GROUP)
    acting.permissions.add(*ours.exclude(codename__startswith="delete_"))


def guard_raw_queues(view):
    """django-rq's queue pages (raw Redis) only check ``is_staff``: reading them wants
    the view permission on jobs, and anything that changes Redis the change permission.

    What they read unchecked is a 404: a queue, worker or scheduler by its index
    (IndexError), an RQ job id or worker key that cannot be one, an RQ job that has
    expired (a stale link: NoSuchJobError), a worker that has stopped."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if "name[]" in request.GET:
            # django-rq's metrics view swaps its process-wide registry for the filtered
            # one: every later scrape (a token's too) got the filtered set, until a restart.
            request.GET = request.GET.copy()
            del request.GET["name[]"]
        user = request.user
        if not user.is_authenticated or not user.is_staff:
            return view(request, *args, **kwargs)  # django-rq sends them to the login page
        allowed = may_watch(user) if request.method in SAFE_METHODS else may_act(user)
        if not allowed:
            raise PermissionDenied
        _check_names(kwargs)
        try:
            return view(request, *args, **kwargs)
        except (IndexError, NoSuchJobError):
            raise Http404("No such queue, worker, scheduler or job.") from None
        except AssertionError:  # django-rq asserts the worker it looked up by its key
            if "key" not in kwargs:
                raise
            raise Http404("No such worker: it has stopped.") from None

    return guarded


def _check_names(kwargs: dict) -> None:
    """A job id or worker key in the path that RQ would refuse (ValueError) is a 404."""
    job_id, key = kwargs.get("job_id"), kwargs.get("key")
    if job_id is not None and not JOB_ID_PATTERN.fullmatch(job_id):
        raise Http404("No such job: that is not an RQ job id.")
    if key is not None and not key.startswith(RQWorker.redis_worker_namespace_prefix):
        raise Http404("No such worker: that is not an RQ worker key.")
