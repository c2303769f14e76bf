"""The API's documentation (/api/schema/, /api/docs/) says what each endpoint does: every
operation has a description of its own, never the docstring of a mixin or base class
(those document code) — a newcomer browsing /api/docs/ read "A view mixin: the request's
handling runs inside the caller's trace." for submitting a job."""

from __future__ import annotations

import collections
import inspect

import pytest

from apikit.views import Conventions
from jobs.api.traces import ContinuesCallersTrace

pytestmark = pytest.mark.django_db

_METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(api) -> dict[str, str]:
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return {
        f"{method.upper()} {path}": (operation.get("description") or "").strip()
        for path, methods in response.json()["paths"].items()
        for method, operation in methods.items()
        if method in _METHODS
    }


def test_every_operation_says_what_it_does(api_as, alice):
    operations = _operations(api_as(alice))
    assert len(operations) > 40
    undescribed = sorted(name for name, description in operations.items() if not description)
    assert undescribed == []


def test_no_operation_is_described_by_a_mixins_docstring(api_as, alice):
    plumbing = {inspect.cleandoc(cls.__doc__ or "") for cls in (Conventions, ContinuesCallersTrace)}
    borrowed = sorted(name for name, description in _operations(api_as(alice)).items() if description in plumbing)
    assert borrowed == []


def test_no_two_operations_share_a_description(api_as, alice):
    by_description = collections.defaultdict(list)
    for name, description in _operations(api_as(alice)).items():
        by_description[description].append(name)
    shared = {description[:60]: names for description, names in by_description.items() if len(names) > 1}
    assert shared == {}
