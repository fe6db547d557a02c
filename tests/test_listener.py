"""The NOTIFY listener: writes by "other programs" (a raw psycopg connection) reach the cache."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command

from connectors import cache, selectors
from connectors.cache.listener import (
    InvalidationListener,
    ListenerUnsupported,
    conninfo_from_settings,
)
from tests.support import workloads
from tests.support.clients import NOT_CONNECTED
from tests.support.pgbouncer import PgBouncer
from tests.support.procs import env_for_manage

# conftest turns the postgres / redis marks into a skip without the services (a failure in CI).
needs_services = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parent.parent
TABLE = "connectors_platformconnection"


def services(test: Any) -> Any:
    for mark in reversed(needs_services):
        test = mark(test)
    return test


@pytest.fixture
def other_program() -> Iterator[psycopg.Connection[Any]]:
    """A connection that is not Django's: its writes send no signal and run no on_commit."""
    params = conninfo_from_settings()  # the test database, as pytest-django renamed it
    params["application_name"] = "other-program"
    with psycopg.connect(autocommit=True, **params) as conn:
        yield conn


@pytest.fixture
def listener() -> Iterator[InvalidationListener]:
    lines: list[str] = []
    running = InvalidationListener(
        poll_seconds=0.05, backoff_initial=0.3, backoff_max=1.0, log=lines.append
    )
    thread = threading.Thread(target=running.run, kwargs={"max_seconds": 30}, daemon=True)
    thread.start()
    assert running.listening.wait(5), f"listener did not start: {lines}"
    yield running
    running.stop()
    thread.join(5)
    assert not thread.is_alive()


def seed(listener: InvalidationListener) -> str:
    """A new user with a github row, once the listener has handled the insert's notification.

    Otherwise that notification could arrive after the test primed the cache and evict it.
    """
    before = listener.stats.invalidations
    [user] = workloads.seed_users(1, ["github"])
    deadline = time.monotonic() + 2
    while listener.stats.invalidations == before:
        assert time.monotonic() < deadline, "the insert's notification never arrived"
        time.sleep(0.002)
    return user


def cached_version(user: str, provider: str = "github") -> int | None:
    data = cache.get_cached_platform_status(user)
    return None if data is None else int(data["platforms"][provider]["version"])


def prime(user: str) -> int:
    """Cache the user's status; the cached github version."""
    selectors.platform_status_for_user(user_id=user)
    version = cached_version(user)
    assert version is not None, "the read did not fill the cache"
    return version


def wait_until_uncached(user: str, within: float = 2.0) -> float:
    started = time.perf_counter()
    while cache.get_cached_platform_status(user) is not None:
        assert time.perf_counter() - started < within, f"still cached after {within} s"
        time.sleep(0.002)
    return time.perf_counter() - started


def raw_update(conn: psycopg.Connection[Any], user: str, status: str = "success") -> int:
    row = conn.execute(
        f"UPDATE {TABLE} SET last_sync_status = %s WHERE user_id = %s AND provider = 'github' "  # noqa: S608
        "RETURNING version",
        [status, user],
    ).fetchone()
    assert row is not None
    return int(row[0])


@services
def test_a_write_by_another_program_is_invalidated_and_the_next_read_is_fresh(
    listener: InvalidationListener, other_program: psycopg.Connection[Any]
) -> None:
    user = seed(listener)
    old = prime(user)

    new = raw_update(other_program, user)
    assert new > old
    latency = wait_until_uncached(user)
    print(f"commit-to-invalidated via NOTIFY: {latency * 1000:.1f} ms")

    read = selectors.platform_status_for_user(user_id=user)
    assert read.data["platforms"]["github"]["version"] == new
    assert cached_version(user) == new
    assert listener.stats.invalidations >= 1


@services
def test_rolled_back_writes_send_nothing_and_deletes_do(
    listener: InvalidationListener, other_program: psycopg.Connection[Any]
) -> None:
    user = seed(listener)
    prime(user)
    before = listener.stats.notifications

    with pytest.raises(psycopg.errors.RaiseException), other_program.transaction():
        raw_update(other_program, user)
        other_program.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back'; END $$")
    time.sleep(0.3)  # NOTIFY is sent at commit: a rollback must leave the entry alone
    assert listener.stats.notifications == before
    assert cached_version(user) is not None

    other_program.execute(f"DELETE FROM {TABLE} WHERE user_id = %s", [user])  # noqa: S608
    wait_until_uncached(user)
    read = selectors.platform_status_for_user(user_id=user)
    assert read.data["platforms"]["github"] == NOT_CONNECTED


@services
def test_reconnect_replays_the_outbox_so_writes_missed_while_away_are_not_served(
    listener: InvalidationListener, other_program: psycopg.Connection[Any]
) -> None:
    """Every write made while the listener was away is either delivered (its writer's DEL) or
    still undelivered in the outbox: the reconnect replays those, and no other user's entry is
    dropped (the old epoch bump emptied every host's cache at once)."""
    user = seed(listener)
    bystander = seed(listener)
    prime(user)
    prime(bystander)
    pid = listener.backend_pid
    assert pid is not None

    other_program.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while listener.listening.is_set():
        assert time.monotonic() < deadline, "the listener did not notice its backend died"
        time.sleep(0.005)
    # The listener is away (back-off 0.3 s): this write's notification is lost for good.
    new = raw_update(other_program, user)
    assert cached_version(user) is not None

    assert listener.listening.wait(5), "the listener did not reconnect"
    assert listener.backend_pid != pid
    assert listener.stats.connects == 2
    assert listener.stats.resyncs == 2
    assert listener.stats.failures >= 1
    # Only the replay can have removed it (the sweeper is off in tests) ...
    assert cached_version(user) is None
    assert (
        selectors.platform_status_for_user(user_id=user).data["platforms"]["github"]["version"]
        == new
    )
    # ... and the user nobody wrote keeps its entry.
    assert cached_version(bystander) is not None
    assert listener.stats.epoch_bumps == 0


@services
def test_command_once_handles_one_notification_and_summarises(
    other_program: psycopg.Connection[Any],
) -> None:
    [user] = workloads.seed_users(1, ["github"])
    out = io.StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("listen_invalidations", "--once", "--max-seconds", "10"),
        kwargs={"stdout": out},
    )
    thread.start()
    deadline = time.monotonic() + 5
    while "Listening on" not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.01)
    prime(user)
    raw_update(other_program, user)
    thread.join(10)
    assert not thread.is_alive()
    assert cached_version(user) is None
    summary = out.getvalue().strip().splitlines()[-1]
    assert summary.startswith("Done! 1 notification, 1 invalidation,"), summary


def test_command_refuses_sqlite_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "manage.py", "listen_invalidations", "--max-seconds", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "needs PostgreSQL" in result.stderr, result.stderr


@services
def test_sigterm_ends_the_command_cleanly_with_its_summary() -> None:
    """What systemd, Docker and Kubernetes send to stop a service: exit 0, summary printed."""
    env = env_for_manage()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "listen_invalidations"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the listener says it is listening
        assert "Listening on" in first, first + (process.stderr.read() if process.stderr else "")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("Done! 0 notifications, 0 invalidations")
    assert "Traceback" not in err


# --- Behind a transaction pooler -------------------------------------------------------------
@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PgBouncer]:
    """A real pgbouncer in transaction mode in front of the local Postgres."""
    bouncer = PgBouncer(pool_mode="transaction").start()
    yield bouncer
    bouncer.stop()


def through(bouncer: PgBouncer) -> dict[str, Any]:
    """The test database's connection parameters, through `bouncer`."""
    params = conninfo_from_settings()
    params.update(host="127.0.0.1", port=bouncer.port)
    return params


@services
def test_a_listener_behind_a_transaction_pooler_fails_loudly_instead_of_hearing_nothing(
    pgbouncer: PgBouncer,
) -> None:
    """pgbouncer in transaction mode: LISTEN "succeeds" and no notification ever arrives (it
    drops them, unlinked). The listener's own test NOTIFY shows it, and it stops with the fix."""
    lines: list[str] = []
    running = InvalidationListener(
        conninfo=lambda: through(pgbouncer),
        poll_seconds=0.05,
        backoff_initial=0.3,
        log=lines.append,
    )
    running.probe_seconds = 1.0
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = running.run(max_seconds=8)
        except Exception as e:
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)

    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ListenerUnsupported), (outcome, lines)
    assert "LISTEN_DATABASE_URL" in str(outcome["error"])
    assert not running.listening.is_set()


@services
def test_the_command_behind_a_transaction_pooler_exits_with_the_fix(settings, pgbouncer) -> None:
    listen = dict(settings.DATABASES["default"])
    listen.update(HOST="127.0.0.1", PORT=pgbouncer.port, PASSWORD="")
    settings.LISTEN_DATABASE = listen  # as LISTEN_DATABASE_URL pointing at the pooler would
    with pytest.raises(CommandError, match="test notification did not arrive"):
        call_command("listen_invalidations", "--max-seconds", "10", stdout=io.StringIO())


def test_a_database_url_through_a_transaction_pooler_is_refused_without_listen_database_url(
    settings,
) -> None:
    settings.DATABASE_TRANSACTION_POOLER = True  # DATABASE_POOLER=transaction, or port 6543
    settings.LISTEN_DATABASE = None
    with pytest.raises(ListenerUnsupported, match=r"Set LISTEN_DATABASE_URL"):
        conninfo_from_settings()


@services
def test_listen_database_url_takes_the_listener_past_the_pooler(
    settings, other_program: psycopg.Connection[Any]
) -> None:
    """The web processes go through the pooler; the listener gets its own direct URL."""
    settings.DATABASE_TRANSACTION_POOLER = True
    settings.LISTEN_DATABASE = dict(settings.DATABASES["default"])
    [user] = workloads.seed_users(1, ["github"])
    running = InvalidationListener(poll_seconds=0.05, log=lambda line: None)
    thread = threading.Thread(target=running.run, kwargs={"max_seconds": 15}, daemon=True)
    thread.start()
    try:
        assert running.listening.wait(10), "the listener did not start"
        prime(user)
        raw_update(other_program, user)
        wait_until_uncached(user, within=5)
    finally:
        running.stop()
        thread.join(5)
