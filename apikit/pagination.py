from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


def _whole_number(request, name: str, *, maximum: int) -> int | None:
    """A query parameter that must be a whole number from 1 to ``maximum``: absent is
    None; anything else is a 400 naming it (DRF silently used the default)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    # ASCII digits only: str.isdigit() also passes '²', which int() refuses (and int()
    # refuses 4,300 digits or more, zeros in front counted: they go first).
    digits = (raw.lstrip("0") or "0") if raw.isascii() and raw.isdigit() else ""
    if not digits or len(digits) > len(str(maximum)) or not 1 <= int(digits) <= maximum:
        raise ValidationError({name: [f"A whole number from 1 to {maximum} is required, not {raw[:20]!r}."]})
    return int(digits)


class Pagination(PageNumberPagination):
    """``?page=`` (from 1) and ``?page_size=`` (1 to 500); answers carry count, next,
    previous. A value outside those is a 400, as the schema says."""

    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()  # the schema says a number; "last" is not one
    max_page = 1_000_000_000  # past any real list; a bound the schema can state

    def get_page_size(self, request) -> int | None:
        default = getattr(settings, "API_PAGE_SIZE", 50)
        return _whole_number(request, self.page_size_query_param, maximum=self.max_page_size) or default

    def get_page_number(self, request, paginator) -> int:
        return _whole_number(request, self.page_query_param, maximum=self.max_page) or 1

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
            elif parameter["name"] == self.page_query_param:
                parameter["schema"]["maximum"] = self.max_page
        return parameters
