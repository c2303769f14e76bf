"""Create the first admin once and print its login (the same one on every run)."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create the admin user if missing (password kept in var/admin-password) and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, username: str, url: str, **options):
        # Jobdesk's own settings keep local state in VAR_DIR; a project of its own may not
        # have one: var/ where the command runs.
        var_dir = Path(getattr(settings, "VAR_DIR", "var"))
        password_file = var_dir / "admin-password"
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            var_dir.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
            user = users.objects.create_superuser(username, f"{username}@localhost", password)
        token, _ = Token.objects.get_or_create(user=user)
        if password_file.exists() and user.check_password(password_file.read_text().strip()):
            shown = password_file.read_text().strip()
        else:
            shown = "(changed since first run; reset with: python manage.py changepassword admin)"
        self.stdout.write(
            f"Admin console: {url}/admin/   user: {username}   password: {shown}\n"
            f"API: {url}/api/docs/   token: {token.key}"
        )
