"""Postgres stopped under a running service, and started again.

Real processes, all owned by this test: a throwaway Postgres cluster (initdb on a free port),
a throwaway redis-server, and the app served by `manage.py runserver` in a subprocess. The
shared Postgres and Redis are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.auth import issue_token
from connectors.management.commands.seed_demo import demo_user_id
from tests.support.procs import (
    ROOT,
    PostgresCluster,
    RedisServer,
    free_port,
    postgres_bindir,
    stop_process,
    wait_http,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
TTL_SCALE = 0.02  # a 6 s status TTL, so "past its TTL" is reachable within the test


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail("no initdb found: install PostgreSQL's server package")
    server = PostgresCluster(bindir)
    try:
        server.init()
        server.create_database("app")
        yield server
    finally:
        server.destroy()


@dataclass
class App:
    base: str
    process: subprocess.Popen[bytes]

    def call(self, method: str, path: str, token: str) -> tuple[int, dict[str, Any], Any]:
        request = urllib.request.Request(
            self.base + path, method=method, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())


@pytest.fixture
def app(own_postgres: PostgresCluster) -> Iterator[App]:
    redis_server = RedisServer()
    redis_server.start()
    env = {
        **os.environ,
        "DATABASE_URL": own_postgres.url("app"),
        "REDIS_URL": redis_server.url,
        "CACHE_KEY_PREFIX": "pgdown",
        "CACHE_TTL_SCALE": str(TTL_SCALE),
        "CACHE_XFETCH_BETA": "0",  # keep refreshes at the TTL, where this test looks
        "CACHE_OUTBOX_SWEEP_SECONDS": "0.5",
        "DATABASE_CONNECT_TIMEOUT": "2",
        "LOG_LEVEL": "warning",
    }
    manage = [sys.executable, "manage.py"]
    port = free_port()
    process = None
    try:
        for command in (["migrate", "-v", "0"], ["seed_demo", "--users", "3"]):
            subprocess.run(
                manage + command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120
            )
        process = subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/healthz", proc=process)
        except RuntimeError as e:
            pytest.fail(f"the app server did not start: {e}")
        yield App(base=base, process=process)
    finally:
        if process is not None:
            stop_process(process)
        redis_server.kill()


def test_postgres_down_serves_cached_users_refuses_the_rest_and_recovers(
    app: App, own_postgres: PostgresCluster
):
    cached_user, uncached_user = demo_user_id(0), demo_user_id(1)
    cached_token = issue_token(user_id=cached_user)
    uncached_token = issue_token(user_id=uncached_user)
    status_path = "/api/connectors/status/{}"
    assert app.call("GET", status_path.format(cached_user), cached_token)[2]["cached"] is False
    warmed_at = time.monotonic()
    code, _, before = app.call("GET", status_path.format(cached_user), cached_token)
    assert (code, before["cached"]) == (200, True)

    own_postgres.stop()
    code, _, body = app.call("GET", status_path.format(cached_user), cached_token)
    assert code == 200
    assert body["cached"] is True and "stale" not in body
    assert body["data"] == before["data"]

    code, headers, body = app.call("GET", status_path.format(uncached_user), uncached_token)
    assert code == 503
    assert body["error"]["code"] == "database_unavailable"
    assert headers["Retry-After"]

    code, _, body = app.call("POST", f"/api/connectors/reset/{cached_user}", cached_token)
    assert code == 503
    assert body["success"] is False

    code, _, body = app.call("GET", "/readyz", cached_token)
    assert code == 503
    assert body["database"] == "unavailable"

    # Past the entry's TTL, within the stale-if-error window: still served, marked stale.
    time.sleep(max(0.0, warmed_at + 300 * TTL_SCALE + 0.5 - time.monotonic()))
    code, _, body = app.call("GET", status_path.format(cached_user), cached_token)
    assert code == 200
    assert body["cached"] is True and body["stale"] is True
    assert body["data"] == before["data"]

    own_postgres.start()
    # No restart of the app: the next requests reconnect by themselves.
    deadline = time.monotonic() + 15
    while True:
        code, _, body = app.call("GET", status_path.format(uncached_user), uncached_token)
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == 200
    code, _, body = app.call("GET", status_path.format(cached_user), cached_token)
    assert code == 200 and "stale" not in body
    # The write refused during the outage was not half-applied.
    assert body["data"]["platforms"] == before["data"]["platforms"]
    code, _, body = app.call("POST", f"/api/connectors/reset/{cached_user}", cached_token)
    assert code == 200
    assert app.call("GET", "/readyz", cached_token)[0] == 200
