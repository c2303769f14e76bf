"""A password hasher for the test suite: Django's PBKDF2 (same algorithm name, same
format) at a thousand iterations instead of Django's default (0.37 s a hash here). Its
hashes are checked by any process on the default settings — a web server or worker
the suite starts — since PBKDF2 reads the iteration count from the stored hash (such a
process hashes the password again, at its own count, on the first login)."""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class CheapPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1_000
