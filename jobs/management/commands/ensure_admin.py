"""Create the first admin once and print its login (the same one on every run)."""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from rest_framework.authtoken.models import Token

LEGACY_FILE = "admin-password"  # one file for every database, before they had one each


def password_file(var_dir: Path) -> Path:
    """Where this database's admin password is kept: one file per database, so switching
    ``DATABASE_URL`` back and forth keeps each one's login (``admin-password-<name>-<hash>``)."""
    db = connection.settings_dict
    identity = f"{connection.vendor}:{db.get('HOST') or ''}:{db.get('PORT') or ''}:{db['NAME']}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(db["NAME"])).name)[:40]
    return var_dir / f"{LEGACY_FILE}-{name}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


class Command(BaseCommand):
    help = "Create the admin user if missing (its password kept in var/, one file per database) and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, username: str, url: str, **options):
        # Jobdesk's own settings keep local state in VAR_DIR; a project of its own may not
        # have one: var/ where the command runs.
        var_dir = Path(getattr(settings, "VAR_DIR", "var"))
        kept = password_file(var_dir)
        users = get_user_model()
        _check_username(users, username)
        user = users.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            var_dir.mkdir(parents=True, exist_ok=True)
            kept.write_text(password + "\n")
            kept.chmod(0o600)
            user = users.objects.create_superuser(username, f"{username}@localhost", password)
        token, _ = Token.objects.get_or_create(user=user)
        shown = _kept_password(user, [kept, var_dir / LEGACY_FILE])
        if shown is None:
            shown = f"(changed since first run; reset with: python manage.py changepassword {username})"
        self.stdout.write(
            f"Admin console: {url}/admin/   user: {username}   password: {shown}\n"
            f"API: {url}/api/docs/   token: {token.key}"
        )


def _check_username(users, username: str) -> None:
    """The user model's own rules (its length, its validators): a traceback from the
    database otherwise."""
    field = users._meta.get_field(users.USERNAME_FIELD)
    try:
        field.clean(username, None)
    except ValidationError as error:
        raise CommandError(f"--username {username[:40]!r}: {' '.join(error.messages)}") from None


def _kept_password(user, files: list[Path]) -> str | None:
    """The first kept password that is still the user's."""
    for file in files:
        if file.exists() and user.check_password(file.read_text().strip()):
            return file.read_text().strip()
    return None
