from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from io import StringIO
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from connectors import cache
from connectors.management.commands.seed_demo import demo_user_id
from connectors.models import PlatformConnection

pytestmark = pytest.mark.django_db(transaction=True)


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_creates_three_to_seven_connections_per_user_and_is_idempotent():
    first = _run("seed_demo", "--users", "20")
    assert "Done! Seeded 20 demo users" in first
    counts = [PlatformConnection.objects.filter(user_id=demo_user_id(i)).count() for i in range(20)]
    assert all(3 <= c <= 7 for c in counts)
    total = PlatformConnection.objects.count()
    _run("seed_demo", "--users", "20")
    assert PlatformConnection.objects.count() == total


@pytest.mark.redis
def test_warm_cache_fills_every_active_user_then_finds_them_cached():
    _run("seed_demo", "--users", "10")
    out = _run("warm_cache")
    users = PlatformConnection.objects.active().values("user_id").distinct().count()
    assert f"Done! Warmed {users} users" in out
    assert f"({users} filled, 0 already cached)" in out
    assert all(cache.get_cached_platform_status(demo_user_id(i)) is not None for i in range(3))
    assert f"(0 filled, {users} already cached)" in _run("warm_cache")


@pytest.mark.redis
def test_warm_cache_takes_named_users_and_refuses_bad_ids():
    _run("seed_demo", "--users", "3")
    out = _run("warm_cache", "--user", demo_user_id(1))
    assert "Warmed 1 user in" in out
    assert cache.get_cached_platform_status(demo_user_id(1)) is not None
    assert cache.get_cached_platform_status(demo_user_id(2)) is None
    with pytest.raises(CommandError, match="UUID"):
        _run("warm_cache", "--user", "nope")
    assert "Warmed" in _run("warm_cache", "--active-since", "1")


@pytest.mark.redis
def test_clear_cache_deletes_by_user_or_by_prefix_and_nothing_else():
    _run("seed_demo", "--users", "3")
    _run("warm_cache")
    out = _run("clear_cache", "--user", demo_user_id(0))
    assert "Deleted 1 key for 1 user in" in out
    assert cache.get_cached_platform_status(demo_user_id(0)) is None
    assert cache.get_cached_platform_status(demo_user_id(1)) is not None
    foreign = f"someone-else:1:platform_status:{{{uuid.uuid4()}}}"
    cache.maintenance_client().set(foreign, b"x", ex=60)
    try:
        assert "Done! Deleted" in _run("clear_cache")
        assert cache.get_cached_platform_status(demo_user_id(1)) is None
        assert cache.maintenance_client().get(foreign) == b"x"
    finally:
        cache.maintenance_client().delete(foreign)


def test_issue_token_signs_user_and_service_role_tokens():
    user = str(uuid.uuid4())
    claims = jwt.decode(
        _run("issue_token", user).strip(),
        settings.SUPABASE_JWT_SECRET,
        algorithms=["HS256"],
        audience="authenticated",
    )
    assert claims["sub"] == user and claims["role"] == "authenticated"
    service = jwt.decode(
        _run("issue_token", "--service-role", "--ttl", "60").strip(),
        settings.SUPABASE_JWT_SECRET,
        algorithms=["HS256"],
        options={"verify_aud": False},
    )
    assert service["role"] == "service_role" and service["exp"] - service["iat"] == 60
    with pytest.raises(CommandError):
        _run("issue_token", "not-a-uuid")
    with pytest.raises(CommandError):
        _run("issue_token")


@pytest.mark.redis
def test_bulk_commands_log_a_summary_not_a_line_per_user(caplog):
    caplog.set_level(logging.INFO, logger="connectors")
    out = _run("seed_demo", "--users", "30")
    assert "Done! Seeded 30 demo users" in out
    out = _run("warm_cache")
    assert "Done! Warmed" in out
    per_user = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith(("Invalidated", "Cache MISS", "Cache HIT"))
    ]
    assert per_user == []
    caplog.clear()
    _run("warm_cache", "--user", demo_user_id(0), "-v", "2")  # asked for: the lines are back
    assert any(r.getMessage().startswith("Cache HIT") for r in caplog.records)


def test_summaries_use_the_singular_for_one():
    out = _run("seed_demo", "--users", "1")
    assert "Seeded 1 demo user (" in out


# --- make run's welcome (manage.py demo_setup) -----------------------------------------------
def _demo_setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    from tests.support.production import ROOT, base_env

    full = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", **env)
    for name in ("DJANGO_SECRET_KEY", "SUPABASE_JWT_SECRET", "TOKEN_ENCRYPTION_KEY"):
        full.pop(name, None)
    full.update(env)

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    result = manage("demo_setup", "--users", "2")
    rows = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from connectors.models import PlatformConnection as P; print(P.objects.count())",
    )
    result.stdout += f"\nrows={rows.stdout.strip()}"
    return result


def test_development_gets_demo_users_and_a_working_curl_line(tmp_path):
    result = _demo_setup(tmp_path, DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "Try it:" in result.stdout and "Authorization: Bearer ey" in result.stdout
    assert "rows=0" not in result.stdout


def test_production_settings_get_no_demo_data_and_no_token(tmp_path):
    result = _demo_setup(
        tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="s" * 50,
        SUPABASE_JWT_SECRET="j" * 40,
        TOKEN_ENCRYPTION_KEY="l9tpR1P3hU6mZSXWbrmQOQxfSzOg0tx2dq8EHUaSShk=",
    )
    assert result.returncode == 0, result.stderr
    assert "No demo data and no token: DJANGO_DEBUG is off" in result.stdout
    assert "Bearer ey" not in result.stdout and "rows=0" in result.stdout


def test_with_only_supabase_url_set_it_seeds_but_prints_no_token_and_does_not_fail(tmp_path):
    result = _demo_setup(tmp_path, DJANGO_DEBUG="1", SUPABASE_URL="https://abc.supabase.co")
    assert result.returncode == 0, result.stderr
    assert "No token printed: SUPABASE_JWT_SECRET is not set" in result.stdout
    assert "Bearer ey" not in result.stdout


def test_a_remote_database_gets_no_demo_data_even_in_debug():
    from connectors.management.commands.demo_setup import is_development

    postgres = "connectors_site.db.postgresql"
    remote = {"ENGINE": postgres, "HOST": "db.abc.supabase.co"}
    assert is_development(debug=True, database=remote) == (
        False,
        "the database is on db.abc.supabase.co, not this machine",
    )
    for host in ("", "127.0.0.1", "localhost", "/var/run/postgresql"):
        assert is_development(debug=True, database={"ENGINE": postgres, "HOST": host})[0]
    assert not is_development(debug=False, database={"ENGINE": "sqlite3"})[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_with_debug_off_neither_seeds_nor_prints_a_token(tmp_path):
    """The real `make run`, DJANGO_DEBUG=0: it serves, and there is no demo row or token."""
    from tests.support.production import ROOT, SECRETS, base_env, free_port

    port = free_port()
    database = tmp_path / "run.sqlite3"
    env = base_env(
        DJANGO_DEBUG="0",
        DATABASE_URL=f"sqlite:///{database}",
        PORT=str(port),
        **SECRETS,
    )
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    output = log.read_text()
    assert "No demo data and no token: DJANGO_DEBUG is off" in output
    assert "Bearer" not in output
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM connectors_platformconnection").fetchone() == (0,)
