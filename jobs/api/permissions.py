"""The API's side of ``jobs.core.access``: DRF permission classes any app's views use."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from jobs.core import access

READ_ONLY_MESSAGE = "Your account may look at everything here but change nothing (read-only operator)."


def _model(view):
    return getattr(view, "access_model", None) or view.get_queryset().model


class OwnedRows(BasePermission):
    """Rows with an ``owner``: reads show what ``access.visible`` lets through (the view's
    queryset filters); writes are refused to read-only users, and on one row need the
    change permission or ownership. Views name their model in ``access_model``."""

    message = READ_ONLY_MESSAGE

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or access.may_write(request.user, _model(view))

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:
            return True
        self.message = "Only its owner or an operator with the change permission may change this."
        return access.may_change(request.user, obj.owner_id, _model(view))


class StaffModelPermissions(BasePermission):
    """Rows without an owner (work windows, flow controls): staff by Django permissions
    — view to read, add to create, change to edit. A view whose every write is an edit
    (levers) says ``write_permission = "change"``."""

    message = "This needs a staff account with the permission for it; ask an operator."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        model = _model(view)
        if request.method in SAFE_METHODS:
            return access.sees_all(user, model)
        app, name = model._meta.app_label, model._meta.model_name
        creates = request.method == "POST" and getattr(view, "action", "create") == "create"
        verb = getattr(view, "write_permission", None) or ("add" if creates else "change")
        needed = f"{app}.{verb}_{name}"
        return user.is_active and user.is_staff and user.has_perm(needed)
