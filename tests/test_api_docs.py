"""The API's documentation (/api/schema/, /api/docs/) says what each endpoint does: every
operation has a description of its own, never the docstring of a mixin or base class
(those document code) — a newcomer browsing /api/docs/ read "A view mixin: the request's
handling runs inside the caller's trace." for submitting a job."""

from __future__ import annotations

import collections
import inspect

import pytest
from drf_spectacular.generators import EndpointEnumerator

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


def _docstrings_a_view_could_inherit() -> set[str]:
    """Of every API view: its bases' own docstrings (mixins, DRF's classes) and those of
    the bases' methods (an action it does not define itself)."""
    found = set()
    for *_, callback in EndpointEnumerator().get_api_endpoints():
        for base in callback.cls.__mro__[1:-1]:  # not the view itself, nor object
            for documented in (base, *(value for value in vars(base).values() if callable(value))):
                if documented.__doc__ and documented.__doc__.strip():
                    found.add(inspect.cleandoc(documented.__doc__))
    return found


def test_no_operation_is_described_by_a_docstring_its_view_inherits(api_as, alice):
    inherited = _docstrings_a_view_could_inherit()
    assert len(inherited) > 10  # the mixins', DRF's
    borrowed = sorted(name for name, description in _operations(api_as(alice)).items() if description in inherited)
    assert borrowed == []


def test_no_two_operations_share_a_description(api_as, alice):
    by_description = collections.defaultdict(list)
    for name, description in _operations(api_as(alice)).items():
        by_description[description].append(name)
    shared = {description[:60]: names for description, names in by_description.items() if len(names) > 1}
    assert shared == {}


def test_submit_documents_the_409_of_a_reused_idempotency_key(api_as, alice):
    schema = api_as(alice).get("/api/schema/", {"format": "json"}).json()
    assert "another type or payload" in schema["paths"]["/api/jobs/"]["post"]["responses"]["409"]["description"]


def test_a_bulk_submit_is_documented_as_the_plain_list_it_answers(api_as, alice):
    """Not as a page (count, next, results) with page parameters: a client generated from
    the schema would read a list of jobs as a page and find no results."""
    api = api_as(alice)
    operation = api.get("/api/schema/", {"format": "json"}).json()["paths"]["/api/jobs/bulk/"]["post"]
    assert not any(p["in"] == "query" for p in operation.get("parameters", [])), operation["parameters"]
    for code in ("200", "201"):
        declared = operation["responses"][code]["content"]["application/json"]["schema"]
        assert declared["type"] == "array" and declared["items"] == {"$ref": "#/components/schemas/Job"}, declared
    answer = api.post("/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop"}]}, format="json")
    assert answer.status_code == 201 and isinstance(answer.json(), list), answer.content


def test_the_schema_builds_without_warnings_and_names_each_choice_set_once():
    """drf-spectacular's warnings (a choice set under two names, numbered enum names such
    as Priority72bEnum, operationId collisions) make a client generator's names unstable."""
    from django.core.management import call_command
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    call_command("spectacular", "--file", "/dev/null")
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)


def test_the_schema_s_version_is_the_package_s():
    import tomllib
    from pathlib import Path

    from django.conf import settings

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert settings.SPECTACULAR_SETTINGS["VERSION"] == project["project"]["version"]
