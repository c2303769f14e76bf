#!/usr/bin/env python
"""Django's command-line utility; configuration errors print one line and exit 2."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from config.env import run_or_exit

    run_or_exit(lambda: execute_from_command_line(sys.argv))


if __name__ == "__main__":
    main()
