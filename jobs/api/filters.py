import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from jobs.core.models import ErrorCategory, Job, Priority, Status


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


class JobFilter(StrictFilterSet):
    # distinct=False: no join can repeat a row, and DISTINCT makes the page count scan every column
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    priority = django_filters.MultipleChoiceFilter(choices=Priority.choices, distinct=False)
    error_category = django_filters.ChoiceFilter(choices=ErrorCategory.choices)
    type = django_filters.CharFilter()
    heavy = StrictBooleanFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "priority", "type", "heavy", "error_category"]
