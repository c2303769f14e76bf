"""Who may do what in the console (SPEC §10).

Staff with the change permission act. The "Operators (read-only)" group gets every view
permission of the project's own models (not users, groups or API tokens) and nothing
else: its members see every page and cannot act. Ordinary users never get in (the
admin wants ``is_staff``).
"""

from __future__ import annotations

import functools

from django.core.exceptions import PermissionDenied

OPERATORS_GROUP = "Operators (read-only)"
# Apps whose records a read-only operator must not browse (accounts, tokens, sessions).
PRIVATE_APPS = ("auth", "authtoken", "admin", "contenttypes", "sessions")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def may_act(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm("jobs.change_job")


def may_watch(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm("jobs.view_job")


def ensure_operators_group(**_signal_kwargs) -> None:
    """Create the group and give it every view permission there is now (post_migrate:
    run after each migrate, so new models' views join it)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
    views = Permission.objects.filter(codename__startswith="view_").exclude(content_type__app_label__in=PRIVATE_APPS)
    group.permissions.add(*views)


def guard_raw_queues(view):
    """django-rq's queue pages (raw Redis) only check ``is_staff``: reading them wants
    the view permission on jobs, and anything that changes Redis the change permission."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated or not user.is_staff:
            return view(request, *args, **kwargs)  # django-rq sends them to the login page
        allowed = may_watch(user) if request.method in SAFE_METHODS else may_act(user)
        if not allowed:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return guarded
