"""Loaded by pytest before Django's settings (see `-p tests.env` in pyproject.toml).

Gives the suite the secrets a production process must be given, without touching what the
caller set: DATABASE_URL and REDIS_URL decide which real services the suite uses.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("SUPABASE_JWT_SECRET", "test-jwt-secret-" + "y" * 40)
os.environ.setdefault("TOKEN_ENCRYPTION_KEY", "l9tpR1P3hU6mZSXWbrmQOQxfSzOg0tx2dq8EHUaSShk=")
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
# Each test run gets its own prefix, so it never touches another deployment's keys in a
# shared Redis (and never needs FLUSHDB).
os.environ.setdefault("CACHE_KEY_PREFIX", f"connectors-test-{os.getpid()}")
os.environ.setdefault("LOG_LEVEL", "info")
# No background sweeper threads touching the test database behind pytest-django's back: the
# fault tests call connectors.cache.sweep_once() themselves.
os.environ.setdefault("CACHE_OUTBOX_SWEEP_SECONDS", "0")
