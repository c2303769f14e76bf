"""An admin action's selection, checked before Django's admin uses it.

Django's admin filters by the selected ids unchecked: a posted id that is not a valid
UUID raised ``ValidationError`` out of the action — a 500 instead of a message.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse


class SelectionChecked(admin.ModelAdmin):
    """Mix in before ``admin.ModelAdmin``: an action on anything but the model's ids
    changes nothing and says so."""

    def response_action(  # type: ignore[override]  # the stubs' extra argument is a later Django's
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        field = self.model._meta.pk
        try:
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                field.to_python(value)
        except ValidationError:
            self.message_user(request, "The selection is not a list of ids: nothing was changed.", messages.ERROR)
            return None
        return super().response_action(request, queryset)
