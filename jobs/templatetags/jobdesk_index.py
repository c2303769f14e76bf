"""{% jobdesk_numbers as numbers %}: the admin index's numbers (jobs.console.index)."""

from __future__ import annotations

from typing import Any

from django import template

from jobs.console import index

register = template.Library()


@register.simple_tag
def jobdesk_numbers() -> dict[str, Any]:
    return index.numbers()
