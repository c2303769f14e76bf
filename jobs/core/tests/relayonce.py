"""A one-shot script that relays one message to a job's group and exits (as a shell
script or a management command that ends right after a move would)."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from jobs.core import relay  # noqa: E402

relay.send({"job_id": sys.argv[1], "type": "progress", "seq": 1})
