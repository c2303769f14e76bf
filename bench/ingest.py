"""Ingestion speed and memory: a 20 MB text file and a 300-page PDF.

    DATABASE_URL=postgresql://… python bench/ingest.py [--text-mb 20] [--pages 300]

Starts its own Redis, uploads each file through the upload service, then processes it
with a real `manage.py rqworker --burst` (the non-forking worker class, so the job runs
in the worker process whose peak memory is measured). Prints MB/s or pages/s from the
job's own start and finish, the worker's peak RSS, an idle worker's peak for
comparison, and the goal: peak under 3 × the file size + 100 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "omicron",
    "sigma",
    "omega",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--text-mb", type=float, default=20)
    parser.add_argument("--pages", type=int, default=300)
    args = parser.parse_args()
    with environment(
        MAX_UPLOAD_BYTES=str(200 * 1024 * 1024),
        HEAVY_MATERIAL_BYTES=str(10**12),
        DEBUG="false",
        SECRET_KEY="bench-only-secret-" + "x" * 40,
    ) as scratch:
        os.environ["MEDIA_ROOT"] = str(scratch / "media")
        run(args, scratch)


def text_file(megabytes: float) -> bytes:
    rng = random.Random(1)
    lines, size = [], 0
    while size < megabytes * 1024 * 1024:
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 16))) + ".\n"
        if rng.random() < 0.1:
            line += "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def pdf_file(pages: int) -> bytes:
    from fpdf import FPDF

    rng = random.Random(2)
    document = FPDF()
    document.set_font("helvetica", size=10)
    for number in range(1, pages + 1):
        document.add_page()
        document.multi_cell(0, 5, f"Page {number}. " + " ".join(rng.choices(WORDS, k=400)))
    return bytes(document.output())


# Runs the worker and prints the peak RSS (KiB) of what it ran: a fresh parent per
# measurement, as the kernel keeps the largest child's peak for the parent's lifetime.
_MEASURE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_of_burst_worker() -> int:
    """Peak RSS in bytes of one `rqworker --burst` run (non-forking: the job runs in it)."""
    worker = [sys.executable, "manage.py", "rqworker", "--burst", "--worker-class",
              "jobs.execution.worker.JobdeskSimpleWorker", "immediate", "normal", "low"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _MEASURE, *worker], cwd=ROOT, env=os.environ.copy(), check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return int(out.strip()) * 1024


def run(args, tmp: Path) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from ingestion import uploads
    from ingestion.models import Material
    from jobs.core.models import Job

    call_command("migrate", verbosity=0)
    Job.objects.all().delete()
    Material.objects.all().delete()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    mib = 1024 * 1024
    idle = peak_rss_of_burst_worker()
    print(f"database: {django.db.connection.vendor}; an idle burst worker peaks at {idle / mib:.0f} MiB")
    cases = [("text", f"{args.text_mb:g} MB text", "big.txt", text_file(args.text_mb)),
             ("pdf", f"{args.pages}-page PDF", "big.pdf", pdf_file(args.pages))]  # fmt: skip
    for kind, label, name, data in cases:
        material = uploads.upload(owner, SimpleUploadedFile(name, data)).material
        peak = peak_rss_of_burst_worker()
        material = Material.objects.get(pk=material.pk)
        assert material.job_id is not None  # every upload starts a job
        job = Job.objects.get(pk=material.job_id)
        if material.status != Material.Status.READY:
            raise SystemExit(f"{label}: {material.status} {material.error}")
        assert job.started_at is not None and job.finished_at is not None  # ready: its job ran
        seconds = (job.finished_at - job.started_at).total_seconds()
        size = len(data) / mib
        if kind == "text":
            speed = f"{size / seconds:6.2f} MB/s"
        else:
            assert material.pages is not None  # a ready PDF has its page count
            speed = f"{material.pages / seconds:6.1f} pages/s"
        goal = 3 * len(data) + 100 * mib
        print(
            f"{label:16s} {size:6.1f} MiB  {seconds:6.2f} s  {speed}  chunks {material.chunk_count:,}  "
            f"peak worker RSS {peak / mib:5.0f} MiB (+{(peak - idle) / mib:.0f} over idle; goal < {goal / mib:.0f})"
        )


if __name__ == "__main__":
    main()
