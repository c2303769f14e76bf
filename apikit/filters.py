"""Filters that refuse what the schema does not allow, instead of ignoring it."""

import datetime

import django_filters
from django import forms
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """``true`` or ``false``; anything else is a 400 (django-filter's BooleanFilter
    reads "null" and other words as "no filter")."""

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true", **kwargs)


class StrictFilterSet(django_filters.FilterSet):
    """An empty value for a typed parameter (``?created_before=``) is a 400 naming it, as
    the schema says: django-filter would read it as "no filter". (An empty text filter
    is a valid string and filters nothing.)"""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, declared in self.filters.items():
            if isinstance(declared, django_filters.CharFilter):
                continue
            if hasattr(self.data, "getlist") and "" in self.data.getlist(name):
                self.form.add_error(name, "An empty value is not a value: leave the parameter out.")
        return valid and not self.form.errors


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared in UTC. Any offset RFC 3339 allows (up to ±23:59)
    is accepted — PostgreSQL refuses offsets past ±15:59, so the value is converted
    first; one that falls off the calendar's ends is clamped to them."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(datetime.UTC)
            except OverflowError:
                edge = datetime.datetime.min if value.year < 5000 else datetime.datetime.max
                value = edge.replace(tzinfo=datetime.UTC)
        return super().filter(qs, value)


class _AnyTextField(forms.CharField):
    """A text field that lets NUL through: the schema calls the parameter a string, and
    a string may hold one. (Django's CharField refuses it with a 400.)"""

    default_validators: list = []

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class ExactTextFilter(django_filters.CharFilter):
    """Exact match on a text column. A value holding NUL matches no row (no stored text
    holds one, and PostgreSQL cannot even compare it), so it answers an empty page."""

    field_class = _AnyTextField

    def filter(self, qs, value):
        if value and "\x00" in value:
            return qs.none()
        return super().filter(qs, value)
