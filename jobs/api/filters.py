import django_filters

from apikit.filters import ExactTextFilter, StrictBooleanFilter, StrictFilterSet, UTCDateTimeFilter
from jobs.core.models import ErrorCategory, Job, Priority, Status


class JobFilter(StrictFilterSet):
    # distinct=False: no join can repeat a row, and DISTINCT makes the page count scan every column
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    priority = django_filters.MultipleChoiceFilter(choices=Priority.choices, distinct=False)
    error_category = django_filters.ChoiceFilter(choices=ErrorCategory.choices)
    type = ExactTextFilter()
    heavy = StrictBooleanFilter()
    batch = django_filters.UUIDFilter(field_name="batch_id", help_text="the jobs of one batch")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "priority", "type", "heavy", "error_category"]
