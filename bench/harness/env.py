"""The environment of the app a harness serves, and the harness's own knobs."""

from __future__ import annotations

import base64
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
PY = sys.executable

# The service's own settings (and the bench app's): a harness decides them for the app it
# serves, whatever the caller's shell holds (a stray SUPABASE_URL or THROTTLE_* would change
# what is measured). The harnesses' own knobs (BENCH_USERS, FAULTS_*, ...) pass through.
SERVICE_ENV_PREFIXES = (
    "REDIS_",
    "UPSTASH_",
    "DJANGO_",
    "DATABASE_",
    "CACHE_",
    "THROTTLE_",
    "SUPABASE_",
    "TOKEN_",
    "LOG_LEVEL",
    "BENCH_DB_",
    "BENCH_CEILING",
    "BENCH_CACHE_MODE",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "PROMETHEUS_MULTIPROC_DIR",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "BENCH_HA_MODE",
)


def make_log(tag: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    return log


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def envflt(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def make_secrets() -> dict[str, str]:
    """Fresh each run, so nothing secret-looking lives in the repository."""
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def app_env(
    *, database_url: str, redis_url: str | None, prefix: str, secret_env: dict[str, str]
) -> dict[str, str]:
    """The caller's environment without any service setting, plus production settings (DEBUG
    off, LOG_LEVEL=warning) for this database, this Redis (None: no cache) and key prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
    env.update(secret_env)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        LOG_LEVEL="warning",
        CACHE_KEY_PREFIX=prefix,
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env
