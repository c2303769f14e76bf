"""Odd input to an admin's list and actions: a message, never a 500.

Django's admin filters by an action's selected ids unchecked (one that is not a valid
UUID raised ``ValidationError`` out of the action), and a list's lookups by date reach
the database unchecked (``?created_at__year=-1`` raised ``ValueError`` while counting;
``created_at__year=9999&…month=12&…day=31`` an ``OverflowError`` in Django's date
drill-down).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import DataError, NotSupportedError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

# What a lookup's value can raise once it reaches a query, a date or the database (a
# NUL in a text value: PostgreSQL's DataError; a lookup the database cannot do, such as
# a JSON list's __contains on SQLite: NotSupportedError).
BAD_LOOKUP = (OverflowError, ValueError, ValidationError, DataError, NotSupportedError)


class CheckedChangeList(ChangeList):
    """A lookup no row can match (a year 13 months long, a UUID that is not one) is a bad
    filter — the list shows its error notice — not a 500."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except BAD_LOOKUP as error:
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request) -> None:
        try:
            super().get_results(request)
        except BAD_LOOKUP as error:
            raise IncorrectLookupParameters(error) from error


class InputChecked(admin.ModelAdmin):
    """Mix in before ``admin.ModelAdmin``: its list takes odd lookups as bad filters, and
    an action on anything but the model's ids changes nothing and says so."""

    def get_changelist(self, request, **kwargs):
        return CheckedChangeList

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
