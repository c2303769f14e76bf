"""schemathesis against the live schema, as an operator and as a plain user: no request
it can think of gets a 5xx, every documented answer matches the schema, and what the
schema allows is accepted (what it forbids, refused).

Random generation, on a seed chosen per run and printed at the start (``FUZZ_SEED=<n>``
replays a run); ``FUZZ_EXAMPLES`` sets the examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from conftest import FUZZ_EXAMPLES as EXAMPLES  # printed in the run's header
from conftest import FUZZ_SEED as SEED

pytestmark = pytest.mark.django_db(transaction=True)

# Loaded at collection: generating the schema needs Django, not the database.
# /api/health/ answers 503 by design when a part is down (documented, tested elsewhere).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application).exclude(path="/api/health/")
# Valid requests must be accepted and invalid ones refused: both kinds are generated.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def _period_the_schema_cannot_express(case) -> bool:
    """/api/stats/ refuses a period that ends before it starts or spans more than its
    maximum (said in the parameters' descriptions; OpenAPI cannot relate two values)."""
    return case.path == "/api/stats/" and bool({"since", "until"} & set(case.query or {}))


@schemathesis.check
def invalid_input_refused(ctx, response, case):
    """What the schema forbids is refused — except in form bodies, where a number and the
    string of its digits are the same bytes (schemathesis' "wrong type" is no violation)."""
    if (case.media_type or "").startswith(("multipart/", "application/x-www-form-urlencoded")):
        return None
    return negative_data_rejection(ctx, response, case)


@schemathesis.check
def valid_queries_accepted(ctx, response, case):
    """What the schema allows in a query is accepted. Reads only: a write can be refused
    for what no schema states (an unknown job id in depends_on, a payload its type
    rejects), and those refusals are tested where they are decided."""
    if case.method != "GET" or _period_the_schema_cannot_express(case):
        return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    invalid_input_refused,
    valid_queries_accepted,
]


def check(case, user) -> None:
    token = Token.objects.get_or_create(user=user)[0].key
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@schema.parametrize()
@seed(SEED)
@FUZZ
def test_as_an_operator(case, operator):
    check(case, operator)


@schema.parametrize()
@seed(SEED)
@FUZZ
def test_as_a_user(case, alice):
    check(case, alice)
