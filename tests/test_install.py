"""Jobdesk in a project a team already has: a fresh ``django-admin startproject``,
Jobdesk pip-installed into a fresh virtualenv from this checkout (as a built wheel),
configured as the README says, migrated; a ``@task`` of the host's own app enqueued from
a view, run by ``rqworker-pool`` to SUCCESSFUL, and the job in the host's admin.

The new virtualenv sees, of this suite's packages, only the distributions the wheel
declares (its ``Requires-Dist``, and theirs in turn), linked into a directory of their
own (a .pth file): the test installs nothing from the network but Jobdesk itself, a
module Jobdesk imports without declaring it fails here as it would in a team's project,
and nothing runs from the checkout: the host imports the installed copy."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# The README's "Add Jobdesk to your project", as a host's settings would have it.
HOST_SETTINGS = """
import os

INSTALLED_APPS += [
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "jobs",
    "django_rq",
    "channels",
    "django_tasks",
    "workwindow",
    "shop",
]
REDIS_URL = os.environ["REDIS_URL"]
RQ_QUEUES = {name: {"URL": REDIS_URL} for name in ("immediate", "normal", "low")}
RQ = {
    "WORKER_CLASS": "jobs.execution.worker.JobdeskWorker",
    "SCHEDULER_CLASS": "jobs.upkeep.scheduler.JobdeskScheduler",
}
TASKS = {"default": {"BACKEND": "jobs.tasks.JobdeskBackend"}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
    }
}
DATABASES["default"]["OPTIONS"] = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
ALLOWED_HOSTS = ["testserver", "localhost"]
"""

HOST_URLS = """
from django.contrib import admin
from django.urls import include, path

from shop.views import order

urlpatterns = [
    path("", include("jobs.urls")),
    path("admin/", admin.site.urls),
    path("order/", order),
]
"""

SHOP_TASKS = """
from django_tasks import task


@task(priority=10)
def total(prices: list) -> int:
    return sum(prices)
"""

SHOP_VIEWS = """
from django.http import JsonResponse

from shop.tasks import total


def order(request):
    result = total.enqueue([3, 4, 5])
    return JsonResponse({"id": result.id, "status": result.status})
"""

CHECK = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
import jobs
from shop.tasks import total

step = "{step}"
if step == "order":
    print(json.dumps(Client().get("/order/").json()))
else:
    result = total.get_result("{result_id}")
    admin = get_user_model().objects.create_superuser("boss", password="pw-boss-host")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/jobs/job/?q=shop.tasks.total")
    from asgiref.sync import async_to_sync
    from asgiref.testing import ApplicationCommunicator
    from host.asgi import application  # the README's ASGI application, as written there

    async def asset_status(path):
        scope = {{"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                  "headers": [], "scheme": "http", "server": ("testserver", 80), "asgi": {{"version": "3.0"}}}}
        talk = ApplicationCommunicator(application, scope)
        await talk.send_input({{"type": "http.request", "body": b""}})
        return (await talk.receive_output(10))["status"]

    print(json.dumps({{
        "status": result.status, "value": result.return_value, "jobs_from": jobs.__file__,
        "admin": listing.status_code, "listed": "shop.tasks.total" in listing.content.decode(),
        "asset": async_to_sync(asset_status)("/static/jobs/console.js"),
        "rq_note": "jd-rq-note" in client.get("/admin/django_rq/").content.decode(),
        # the console's scripts write times in the zone the page was rendered in: the
        # project's own base_site.html carries no zone switch
        "zone_meta": '<meta name="jd-zone" content="' in listing.content.decode(),
    }}))
"""


def package_files_left_out(wheel: Path) -> list[str]:
    """The apps' files other than code (templates, static files) that the wheel lacks:
    ingestion's stylesheet was left out, a 404 in a host project's console."""
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    files = [
        path.relative_to(ROOT).as_posix()
        for app in ("jobs", "ingestion", "apikit", "workwindow")
        for path in (ROOT / app).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "tests" not in path.relative_to(ROOT).parts
    ]
    return [name for name in files if name not in packed]


def readme_asgi() -> str:
    """The README's ASGI application (its "Add Jobdesk to your project"), for a project
    named host."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Add Jobdesk to your project") :]
    start = section.index("```python\nimport os\n") + len("```python\n")
    return section[start : section.index("```", start)].replace("yourproject.settings", "host.settings")


def run(args: list[str], cwd: Path, env: dict, timeout: float = 180) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def declared_closure(wheel: Path, extras: tuple[str, ...] = ()) -> set[str]:
    """The distributions installing ``wheel`` (with ``extras``) brings: its requirements,
    theirs, and so on, as this suite has them installed (their markers for this Python
    and the extras asked)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    wanted = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    pending = [(Requirement(text), extras) for text in wanted]
    found: dict[str, set[str]] = {}  # distribution → the extras asked of it so far
    while pending:
        requirement, asked = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in (*asked, "")):
            continue
        dist = canonicalize_name(requirement.name)
        extras_before = found.get(dist)
        if extras_before is not None and requirement.extras <= extras_before:
            continue  # nothing new asked of it (redis, then redis[hiredis]: its extra's are new)
        found[dist] = (extras_before or set()) | requirement.extras
        pending += [(Requirement(text), tuple(found[dist])) for text in importlib.metadata.requires(dist) or []]
    return set(found)


def link_distributions(names: set[str], into: Path) -> None:
    """Each distribution's files (its packages, modules, its .dist-info for entry points
    and versions), linked from this suite's site-packages: a package or module whole, a
    namespace shared by several distributions (``opentelemetry/``, ``google/``) member
    by member, so an undeclared sibling stays out."""
    into.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        base = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":
                _link_outermost_owned(base, into, file.parts)


def _link_outermost_owned(base: Path, into: Path, parts: tuple[str, ...]) -> None:
    for depth in range(1, len(parts) + 1):
        source, link = base.joinpath(*parts[:depth]), into.joinpath(*parts[:depth])
        if depth < len(parts) and source.is_dir() and not (source / "__init__.py").exists():
            link.mkdir(exist_ok=True)  # a namespace (or a data directory): its members one by one
            continue
        if source.exists() and not link.exists() and not link.is_symlink():
            link.symlink_to(source)
        return


def test_jobdesk_installs_into_a_new_project_and_runs_its_task(tmp_path):
    import json

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                    dict(os.environ)).strip())  # fmt: skip
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources.
    source = tmp_path / "jobdesk"
    # (.hypothesis: another test process may be renaming files in it meanwhile.)
    ignored = (".git", ".venv", "var", "build", "*.egg-info", "__pycache__", "*.sqlite3", ".*_cache", ".hypothesis")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*ignored))
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], tmp_path,
        dict(os.environ), timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("jobdesk-*.whl")
    assert not package_files_left_out(wheel), "every template, stylesheet and script of the apps is in the wheel"
    run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], tmp_path, dict(os.environ))
    declared = declared_closure(wheel)  # on SQLite: no extras, so no psycopg either
    assert "hiredis" in declared, "an extra asked of a dependency (redis[hiredis]) is followed"
    assert "psycopg" not in declared and "psycopg" in declared_closure(wheel, ("postgres",))
    link_distributions(declared, tmp_path / "declared")
    (site / "declared-dependencies.pth").write_text(str(tmp_path / "declared") + "\n")

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH"}}
    run([str(python), "-m", "django", "startproject", "host"], tmp_path, env)
    project = tmp_path / "host"
    (project / "host" / "settings.py").write_text((project / "host" / "settings.py").read_text() + HOST_SETTINGS)
    (project / "host" / "urls.py").write_text(HOST_URLS)
    (project / "host" / "asgi.py").write_text(readme_asgi())
    (project / "shop").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "tasks.py").write_text(SHOP_TASKS)
    (project / "shop" / "views.py").write_text(SHOP_VIEWS)
    env["DJANGO_SETTINGS_MODULE"] = "host.settings"

    manage = [str(python), "manage.py"]
    run([*manage, "migrate", "--noinput", "-v", "0"], project, env)
    ordered = json.loads(run([*manage, "shell", "-c", CHECK.format(step="order", result_id="")], project,
                             env).strip().splitlines()[-1])  # fmt: skip
    assert ordered["status"] == "READY"
    run([*manage, "rqworker-pool", "immediate", "normal", "low", "--num-workers", "1", "--burst"], project, env)
    run([*manage, "sync_schedules"], project, env)
    scheduler = subprocess.Popen([*manage, "rqscheduler", "--interval", "1"], cwd=project, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        code = scheduler.wait(4)
        pytest.fail(f"the scheduler exited with {code}: {scheduler.stdout.read()[-2000:] if scheduler.stdout else ''}")
    except subprocess.TimeoutExpired:
        pass  # still running after 4 s: the plain command works in the host too
    finally:
        scheduler.terminate()
        scheduler.wait(10)
    seen = json.loads(run([*manage, "shell", "-c", CHECK.format(step="check", result_id=ordered["id"])],
                          project, env).strip().splitlines()[-1])  # fmt: skip

    assert seen["status"] == "SUCCESSFUL" and seen["value"] == 12
    assert str(site) in seen["jobs_from"], "the host runs the installed Jobdesk, not the checkout"
    assert seen["admin"] == 200 and seen["listed"], "the task's job is in the host's admin console"
    assert seen["asset"] == 200, "the README's ASGI application serves the console's assets"
    assert seen["rq_note"], "Jobdesk's django-rq pages (shipped in the wheel) override django-rq's own"
    assert seen["zone_meta"], "a console page tells its scripts the zone its times are in"
    login = run([*manage, "ensure_admin"], project, env)  # a project without Jobdesk's VAR_DIR
    assert "Admin console:" in login and "password:" in login
