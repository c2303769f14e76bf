"""Who may see and do what: one rule for the console, the API and the WebSockets.

* Staff are judged by Django permissions on the model: the view permission (or the
  change one) shows every row; the change permission acts on every row. A staff user
  who may see every row but change none — the "Operators (read-only)" group — writes
  nothing at all, not even through the API as an ordinary user would.
* Everybody else (ordinary users, and staff with no permission on the model) sees and
  acts on the rows they own.
* Internal job types are submitted by code and crons, never through the API.

Models are named by their label ("jobs.job", "shop.order"), so this module
knows no app's models.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet

_Rows = TypeVar("_Rows", bound=QuerySet)

JOBS = "jobs.job"


def _label(model: type[Model] | str) -> tuple[str, str]:
    label = model if isinstance(model, str) else model._meta.label_lower
    app, name = label.split(".")
    return app, name


def _is_staff(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def sees_all(user, model: type[Model] | str = JOBS) -> bool:
    """Every row of ``model``, not only the user's own."""
    if not _is_staff(user):
        return False
    app, name = _label(model)
    return user.has_perm(f"{app}.view_{name}") or user.has_perm(f"{app}.change_{name}")


def acts_on_all(user, model: type[Model] | str = JOBS) -> bool:
    """Change any row of ``model`` (cancel, retry, reprocess, edit)."""
    app, name = _label(model)
    return _is_staff(user) and user.has_perm(f"{app}.change_{name}")


def read_only(user, model: type[Model] | str = JOBS) -> bool:
    """Sees everything, may change nothing: no write of any kind."""
    return sees_all(user, model) and not acts_on_all(user, model)


def may_write(user, model: type[Model] | str = JOBS) -> bool:
    """May make changes at all (submit, upload, act on own rows)."""
    return bool(getattr(user, "is_authenticated", False)) and not read_only(user, model)


def may_see(user, owner_id, model: type[Model] | str = JOBS) -> bool:
    if sees_all(user, model):
        return True
    return bool(getattr(user, "is_authenticated", False)) and owner_id is not None and owner_id == user.id


def may_change(user, owner_id, model: type[Model] | str = JOBS) -> bool:
    """Staff by the change permission; everyone else on their own rows."""
    if sees_all(user, model):
        return acts_on_all(user, model)
    return may_see(user, owner_id, model)


def visible(queryset: _Rows, user, owner_field: str = "owner") -> _Rows:
    """The rows of ``queryset`` the user may see."""
    if sees_all(user, queryset.model):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(**{owner_field: user})
