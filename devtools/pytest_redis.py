"""pytest plugin (loaded with ``-p devtools.pytest_redis``): a real Redis for the suite.

It must run before pytest-django loads settings (which read REDIS_URL), hence the
``tryfirst`` initial-conftest hook. ``TEST_REDIS_URL`` points the suite at an existing
server instead (it is flushed between tests: never point it at data you keep).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from devtools.redis_server import RedisServer

_server: RedisServer | None = None
_ONE_PROCESS = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    global _server
    # Connections are not kept between uses in tests: WebSocket consumers read on
    # executor threads, and a kept connection there would outlive the test database.
    os.environ.setdefault("DB_CONN_MAX_AGE", "0")
    if fast_layer():
        # `make test-fast`: no Redis; a test that needs one fails at once (port 1 refuses).
        os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"
        return
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        os.environ["REDIS_URL"] = given
        return
    _server = RedisServer(directory=Path(tempfile.mkdtemp(prefix="jobdesk-test-redis-"))).start()
    os.environ["REDIS_URL"] = _server.url


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    # Each of pytest-xdist's processes starts a Redis of its own (above); a server given
    # is one for all, and each test flushes it: the processes would flush each other's
    # keys. The run stays in one process then, and says so in its header. A wrapper, so
    # this comes before xdist's own hook (tryfirst too), which reads the count.
    if os.environ.get("TEST_REDIS_URL") and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.stash[_ONE_PROCESS] = True
    return (yield)


def pytest_report_header(config) -> str | None:
    if config.stash.get(_ONE_PROCESS, False):
        return "TEST_REDIS_URL is one server for the whole run: the tests run in one process"
    return None


def pytest_unconfigure(config) -> None:
    if _server is not None:
        _server.stop()


def fast_layer() -> bool:
    """Is this `make test-fast` (no Redis at all)?"""
    return bool(os.environ.get("JOBDESK_FAST_LAYER"))


def own_server() -> RedisServer:
    """The suite's own Redis server, for a test that stops and starts it; the test is
    skipped where there is none, saying why."""
    if _server is None:
        why = "the fast layer runs none" if fast_layer() else "TEST_REDIS_URL was given"
        pytest.skip(f"needs the suite's own Redis server ({why})")
    return _server
