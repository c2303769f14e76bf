"""Requests an attacker or a broken client sends: bodies far over their route's limit,
lying lengths, broken multipart, spoofed addresses, guessed tokens, huge payloads, and
requests during an outage. Each gets a clear 4xx/503 in the error shape, never a 500,
and never costs the server the body it refuses."""

from __future__ import annotations

import socket
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from rest_framework.test import APIClient

from jobs.core.models import Job
from jobs.core.submit import submit

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["hint"], error
    return error


# --- Through the real web server: refused before the body is read ------------------------


def raw_request(base: str, head: bytes, body: bytes = b"", *, timeout: float = 2.0) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` over a socket; (the answer's first bytes, seconds taken)."""
    host, port = base.removeprefix("ws://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(head + b"\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer, time.monotonic() - started


@pytest.mark.slow
def test_a_declared_terabyte_is_refused_at_once_without_reading_it(web):
    head = (b"POST /api/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000000\r\n")  # fmt: skip
    answer, took = raw_request(web, head, b"x" * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code": "too_large"' in answer and took < 1.0


@pytest.mark.slow
def test_a_chunked_body_is_cut_off_at_the_limit(web):
    head = b"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(80))  # 5 MB > 4 MB
    answer, _ = raw_request(web, head, body, timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_within_the_limit_is_read_whole(web, alice):
    """A body sent without a length (chunked) was taken by DRF for none at all: a PATCH
    answered 200 and changed nothing, a submit said its type was missing."""
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=alice).key
    head = (b"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\nAuthorization: Token %s\r\n" % key.encode())  # fmt: skip
    data = b'{"type": "diagnostics.noop", "payload": {"sent": "in chunks"}}'
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:20], data[20:])) + b"0\r\n\r\n"
    answer, _ = raw_request(web, head, body, timeout=5)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:400]
    assert Job.objects.get(owner=alice).payload == {"sent": "in chunks"}


@pytest.mark.slow
def test_uploads_have_their_own_larger_limit_checked_the_same_way(web, settings):
    head = (b"POST /api/materials/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: %d\r\n" % (settings.MAX_UPLOAD_BYTES + settings.UPLOAD_FRAMING_BYTES + 1))  # fmt: skip
    answer, took = raw_request(web, head)
    assert answer.startswith(b"HTTP/1.1 413") and took < 1.0
    small = b"POST /api/materials/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n"  # 5 MB: allowed size
    answer, _ = raw_request(web, small, timeout=1)
    assert not answer.startswith(b"HTTP/1.1 413"), "within the upload limit, the body is awaited"


# --- Django's own refusals, in the error shape ----------------------------------------------


def test_a_body_over_django_s_memory_limit_is_413_not_500(api_as, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop", "payload": {"x": "y" * 20_000}},
                                  format="json")  # fmt: skip
    assert_error(response, 413, "too_large")


def test_a_malformed_multipart_body_is_a_400_in_the_error_shape(alice):
    from django.test import Client

    client = Client()
    client.force_login(alice)  # session auth reads the form for its CSRF check
    response = client.post("/api/materials/", b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename",
                           content_type="multipart/form-data; boundary=b")  # fmt: skip
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["message"]


def test_payloads_over_the_limit_are_413_naming_the_field(api_as, alice, settings):
    settings.MAX_PAYLOAD_BYTES = 2048
    big = {"type": "diagnostics.noop", "payload": {"blob": "x" * 3000}}
    error = assert_error(api_as(alice).post("/api/jobs/", big, format="json"), 413, "too_large")
    assert "payload" in error["fields"]
    bulk = api_as(alice).post("/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop"}, big]}, format="json")
    assert "jobs[1].payload" in assert_error(bulk, 413, "too_large")["fields"]
    assert not Job.objects.exists()


def nested(depth: int) -> dict:
    """An object ``depth`` levels deep: {"a": {"a": … {} …}}."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_json_nested_too_deeply_is_a_400_saying_where(api_as, alice):
    client = api_as(alice)
    # The body is level 1: a payload 99 levels deep is the most a submit takes.
    ok = client.post("/api/jobs/", {"type": "diagnostics.noop", "payload": nested(99)}, format="json")
    assert ok.status_code == 201, ok.content[:300]
    deep = client.post("/api/jobs/", {"type": "diagnostics.noop", "payload": nested(100)}, format="json")
    error = assert_error(deep, 400, "parse_error")
    assert "100 levels" in error["message"] and list(error["fields"]) == ["payload.a.a…"], error
    bulk = {"jobs": [{"type": "diagnostics.noop"}, {"type": "diagnostics.noop", "payload": nested(120)}]}
    error = assert_error(client.post("/api/jobs/bulk/", bulk, format="json"), 400, "parse_error")
    assert list(error["fields"]) == ["jobs[1].payload…"], error
    # Deeper than Python's json module can parse at all (a RecursionError): still a 400.
    for path in ("/api/jobs/", "/api/jobs/bulk/", "/api/batches/", "/api/materials/"):
        body = "[" * 5000 + "]" * 5000
        error = assert_error(client.post(path, body, content_type="application/json"), 400, "parse_error")
        assert "100 levels" in error["message"] and error["hint"], (path, error)
    assert Job.objects.count() == 1


def test_a_lone_surrogate_is_a_400_saying_where_and_nothing_is_stored(api_as, alice):
    """JSON may escape half of a UTF-16 pair ("\\ud800"), which is no character: a
    payload's failed the submit (a 500); SQLite stored a batch's context, and the batch
    list failed on it from then on (a 500)."""
    client = api_as(alice)
    cases = [
        ("/api/jobs/", '{"type": "diagnostics.noop", "payload": {"note": "a\\ud800b"}}', "payload.note"),
        ("/api/jobs/", '{"type": "diagnostics.noop", "payload": {"\\udfff": 1}}', "payload"),  # in a key
        ("/api/jobs/bulk/", '{"jobs": [{"type": "diagnostics.noop", "payload": {"x": ["\\ud800"]}}]}',
         "jobs[0].payload…"),
        ("/api/batches/", '{"description": "\\ud83d"}', "description"),
    ]  # fmt: skip
    for path, body, where in cases:
        error = assert_error(client.post(path, body, content_type="application/json"), 400, "parse_error")
        assert list(error["fields"]) == [where] and "surrogate" in error["message"], (path, error)
    pair = '{"type": "diagnostics.noop", "payload": {"note": "\\ud83d\\ude00"}}'  # a whole pair: one character
    assert client.post("/api/jobs/", pair, content_type="application/json").status_code == 201
    assert [job.payload["note"] for job in Job.objects.all()] == ["\U0001f600"]


def test_a_number_past_a_floats_range_is_a_400(api_as, alice):
    body = '{"type": "diagnostics.noop", "payload": {"n": 1e400}}'  # reads as infinity
    error = assert_error(api_as(alice).post("/api/jobs/", body, content_type="application/json"), 400, "parse_error")
    assert "1e400 is out of range" in error["message"], error
    assert not Job.objects.exists()


def test_an_integer_longer_than_python_reads_is_a_400_saying_so_to_the_client(api_as, alice):
    body = '{"type": "diagnostics.noop", "payload": {"n": ' + "9" * 5000 + "}}"
    error = assert_error(api_as(alice).post("/api/jobs/", body, content_type="application/json"), 400, "parse_error")
    assert "has more than 4,300 digits" in error["message"], error
    assert "sys.set_int_max_str_digits" not in error["message"]  # advice for the server's developer


def test_the_depth_check_names_the_first_path_too_deep_among_many_shallow_ones():
    from apikit.parsers import nested_too_deeply

    wide = [[[] for _ in range(50_000)]]  # three levels, 50,000 containers on the last
    assert nested_too_deeply(wide, 3) is None
    assert nested_too_deeply(wide, 2) == "[0][0]"
    deep_at_the_end = {"jobs": [{"payload": {}} for _ in range(999)] + [{"payload": nested(10)}]}
    assert nested_too_deeply(deep_at_the_end, 13) is None  # the body, jobs, an item, 10 of payload
    assert nested_too_deeply(deep_at_the_end, 12) == "jobs[999].payload…"
    assert nested_too_deeply({"k" * 100: nested(5)}, 4) == "k" * 40 + "….a.a…", "a long key is cut"


def test_results_over_the_limit_fail_the_job_for_an_operator(settings, run_worker):
    from jobs.core import registry

    settings.MAX_RESULT_BYTES = 2048
    registry.job_type("tests.big_result")(lambda ctx: {"blob": "x" * 5000})
    try:
        job = submit("tests.big_result").job
        run_worker()
        job.refresh_from_db()
        assert (job.status, job.error_category, job.attempts) == ("failed", "admin_required", 1)
        assert "MAX_RESULT_BYTES" in job.error_message
    finally:
        registry.unregister("tests.big_result")


def test_a_page_of_big_payloads_stays_small_and_the_job_itself_is_whole(api_as, operator, settings):
    blob = "x" * 200_000
    for _ in range(20):
        submit("diagnostics.noop", {"blob": blob}, owner=operator)
    client = api_as(operator)
    page = client.get("/api/jobs/?page_size=500")
    assert page.status_code == 200 and len(page.content) < 200_000, len(page.content)  # 4 MB of payloads
    first = page.json()["results"][0]
    assert first["payload"] == {"truncated": True, "bytes": len(blob) + 11} and first["truncated"] == ["payload"]
    whole = client.get(f"/api/jobs/{first['id']}/").json()
    assert whole["payload"] == {"blob": blob} and whole["truncated"] == []


# --- Who is asking: addresses and tokens ----------------------------------------------------


@pytest.mark.redis
def test_a_fresh_forwarded_address_per_request_does_not_lift_the_anonymous_limit(settings):
    settings.API_ANON_RATE = "3/minute"
    client = APIClient()
    # The schema is open to anonymous clients, so their rate applies to it.
    answers = [client.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in range(5)]
    assert answers == [200, 200, 200, 429, 429], answers


@pytest.mark.redis
def test_guessing_tokens_is_throttled_per_address(alice, settings):
    settings.API_AUTH_FAILURE_RATE = "5/minute"
    client = APIClient()
    answers = [client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token guess{n}").status_code for n in range(8)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, answers
    throttled = client.get("/api/jobs/", HTTP_AUTHORIZATION="Token another")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) >= 1
    assert APIClient(REMOTE_ADDR="127.0.0.9").get("/api/jobs/", HTTP_AUTHORIZATION="Token x").status_code == 401


@pytest.mark.redis
def test_a_valid_token_from_a_locked_out_address_is_refused_and_not_counted(alice, settings):
    """The lockout holds for a token this process knows (checked in the round trip that
    logs its user's request) as for one it must read; neither refusal counts against the
    user's rate."""
    from rest_framework.authtoken.models import Token

    from apikit.auth import forget_tokens

    settings.API_AUTH_FAILURE_RATE, settings.API_USER_RATE = "3/minute", "5/minute"
    valid = f"Token {Token.objects.get_or_create(user=alice)[0].key}"
    client = APIClient()
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=valid).status_code == 200  # now known to the process
    assert [client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token guess{n}").status_code for n in range(3)] == [401] * 3
    assert [client.get("/api/jobs/", HTTP_AUTHORIZATION=valid).status_code for _ in range(2)] == [429] * 2
    forget_tokens()
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=valid).status_code == 429  # read only after the count
    elsewhere = APIClient(REMOTE_ADDR="127.0.0.9")
    answers = [elsewhere.get("/api/jobs/", HTTP_AUTHORIZATION=valid).status_code for _ in range(5)]
    assert answers == [200] * 4 + [429], answers  # the user's rate counted the first request only


@pytest.mark.redis
def test_a_users_requests_count_against_its_rate_whatever_the_permissions_answer(alice, settings):
    """Counted when the token opens them (DRF counted after the permissions), the same
    whether this process knew the token or had to read it."""
    from rest_framework.authtoken.models import Token

    from apikit.auth import forget_tokens

    settings.API_USER_RATE = "3/minute"
    valid = f"Token {Token.objects.get_or_create(user=alice)[0].key}"
    client = APIClient()
    refused = []
    for known in (False, True, False):
        if not known:
            forget_tokens()
        refused.append(client.post("/api/work-windows/", {}, format="json", HTTP_AUTHORIZATION=valid).status_code)
    assert refused == [403] * 3, refused
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=valid).status_code == 429


@pytest.mark.redis
def test_a_users_rate_holds_under_concurrent_requests_and_refusals_do_not_count(alice, settings):
    """At most N in the window, however many ask at once (DRF's read-then-write of the
    log let simultaneous requests through); a refused request is not logged, and its
    Retry-After is DRF's advice."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from rest_framework.authtoken.models import Token

    settings.API_USER_RATE = "10/minute"
    key = Token.objects.get_or_create(user=alice)[0].key

    def ask(_=None):
        return APIClient().get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {key}")

    def ask_in_a_thread(_):
        try:
            return ask()
        finally:
            connection.close()  # the thread's own

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask_in_a_thread, range(24)))
    assert sorted(a.status_code for a in answers) == [200] * 10 + [429] * 14
    refused = ask()
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60


def test_bearer_works_wherever_token_does(alice, api_as):
    from rest_framework.authtoken.models import Token

    key = Token.objects.get_or_create(user=alice)[0].key
    assert APIClient().get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


# --- Outages answer 503 with Retry-After ------------------------------------------------


def test_queues_while_redis_is_down_is_503(api_as, alice):
    from devtools import pytest_redis

    server = pytest_redis.own_server()
    server.stop()
    try:
        response = api_as(alice).get("/api/queues/")
        assert_error(response, 503, "unavailable")
        assert int(response["Retry-After"]) >= 1 and "Redis" in response.json()["error"]["message"]
    finally:
        server.start()


def test_every_api_call_while_the_database_is_down_is_503(api_as, alice, monkeypatch):
    client = api_as(alice)

    def down(*args, **kwargs):
        raise OperationalError("connection refused (the test's stand-in for a database that is down)")

    # The one part we cannot stop under a live test database: make every query fail.
    monkeypatch.setattr("django.db.backends.utils.CursorWrapper.execute", down)
    for path in ("/api/jobs/", "/api/health/", "/api/queues/", "/api/stats/"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.content[:300])
        assert response.json()["error"]["code"] in ("unavailable",) and response["Retry-After"]
    assert client.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json").status_code == 503
    assert APIClient().get("/api/stats/").status_code in (401, 503)


def test_upload_with_unknown_fields_is_refused(api_as, alice):
    response = api_as(alice).post(
        "/api/materials/", {"file": SimpleUploadedFile("a.txt", b"hello"), "colour": "red"}, format="multipart"
    )
    assert "colour" in assert_error(response, 400, "invalid")["fields"]


def test_a_misspelt_top_level_field_is_refused_not_ignored(api_as, alice):
    response = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop", "priorty": "immediate"}, format="json")
    error = assert_error(response, 400, "invalid")
    assert "priorty" in error["fields"] and "priority" in error["fields"]["priorty"][0]
    bulk = api_as(alice).post("/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop", "x": 1}]}, format="json")
    assert bulk.status_code == 400 and not Job.objects.exists()


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ('"WebSocket /ws/jobs/1/?token=k1" [accepted]', '"WebSocket /ws/jobs/1/?token=[redacted]" [accepted]'),
        ("/ws/ops/?type=a&Token=k2&status=failed", "/ws/ops/?type=a&Token=[redacted]&status=failed"),
        ("/ws/jobs/1/?%74oken=k3", "/ws/jobs/1/?%74oken=[redacted]"),  # the name as the server decodes it
        ("/ws/jobs/1/?tokens=2&access_token=k4", "/ws/jobs/1/?tokens=2&access_token=[redacted]"),
    ],
)
def test_tokens_in_query_strings_are_blanked_in_the_web_servers_log(line, logged):
    import logging

    from apikit.redact import RedactTokens

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "%s"', ("127.0.0.1:5", line), None)
    assert RedactTokens().filter(record) and record.getMessage() == f'127.0.0.1:5 - "{logged}"'


def test_jobs_added_to_a_batch_have_the_bulk_limit_like_a_bulk(settings):
    """A 5 MB body of 5,000 jobs made a batch (32 MB limit) but was refused 413 when
    added to that batch (the 4 MB default): the route's id is a segment of its own."""
    from apikit.bodylimit import limit_for

    bulk = settings.MAX_BULK_REQUEST_BYTES
    assert limit_for("/api/batches/") == limit_for("/api/jobs/bulk/") == bulk
    assert limit_for("/api/batches/6d1f3c1e-0000-4000-8000-000000000000/jobs/") == bulk
    assert limit_for("/api/batches/6d1f/cancel/") == settings.MAX_REQUEST_BYTES
    assert limit_for("/api/batches//jobs/") == settings.MAX_REQUEST_BYTES  # * is one segment, not none
    assert limit_for("/api/batches/a/b/jobs/") == settings.MAX_REQUEST_BYTES


@pytest.mark.parametrize("debug", [False, True])
def test_a_host_not_allowed_is_a_json_400_under_the_api(settings, debug):
    """Django refuses it before any view, with its HTML page (an adversarial run) — with
    DEBUG on (``make run``'s default), its technical page and the exception's traceback."""
    from django.test import Client

    settings.DEBUG = debug
    settings.ALLOWED_HOSTS = ["testserver"]
    response = Client(HTTP_HOST="evil.example", raise_request_exception=False).get("/api/jobs/")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["hint"]
    posted = Client(HTTP_HOST="evil.example", raise_request_exception=False).post("/api/jobs/", {})
    assert posted.status_code == 400 and posted.json()["error"]["code"] == "bad_request"
    lost = Client().get("/api/no-such-endpoint/")
    assert lost.status_code == 404 and lost.json()["error"]["code"] == "not_found"
