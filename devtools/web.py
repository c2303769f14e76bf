"""How Jobdesk's web tier is started, in one place (``make run``, tests, benchmarks).

uvicorn serves config.asgi — HTTP and the Channels WebSocket routes — because it hands
the request body to the application as it arrives (so ``apikit.bodylimit`` refuses an
oversized body before it is read; daphne buffers every body first) and runs several
processes on one port (``--workers``, from WEB_CONCURRENCY).
"""

from __future__ import annotations

import sys


def command(host: str, port: int | str, *, processes: int = 1, access_log: bool = False) -> list[str]:
    args = [
        sys.executable, "-m", "uvicorn", "config.asgi:application",
        "--host", host, "--port", str(port),
        "--workers", str(processes),
        "--loop", "uvloop", "--http", "httptools",  # not asyncio's loop and h11: less CPU per request
        "--lifespan", "off",  # Django's ASGI application has no lifespan events
        "--ws-max-size", "65536",  # a WebSocket client sends nothing we read (jobs.live): not 16 MiB frames
        "--timeout-graceful-shutdown", "10",
    ]  # fmt: skip
    if not access_log:
        args.append("--no-access-log")
    return args
