"""Background work that does not grow with the number of processes.

One outbox sweeper per host leads (connectors/cache/election.py); the others neither sweep nor
poll the database when idle, yet still learn from the leader when invalidations are
undelivered. Idle load is counted by Postgres itself (pg_stat_database.xact_commit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from connectors import cache
from connectors.cache import outbox
from tests.support.clients import status_of, use_cache
from tests.support.procs import env_for_manage
from tests.support.topologies import RedisNode, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
IDLE = (
    "import sys, time\n"
    "from connectors import cache\n"
    "cache.sweeper.ensure_running()\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def _start(count: int, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", IDLE],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    return processes


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def _commits(database: str) -> int:
    """Transactions committed in `database`, as Postgres counts them (every session's, the
    ones that exited included)."""
    params = {k: v for k, v in connection.get_connection_params().items() if k != "dbname"}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        row = admin.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [database]
        ).fetchone()
    assert row is not None
    return int(row[0])


def _idle_commits(count: int, seconds: float) -> int:
    """Database transactions while `count` idle processes run for `seconds`, their start and
    exit included (an exiting backend reports its counts)."""
    database = connection.settings_dict["NAME"]
    connection.close()  # this session's own counts are reported now, not during the window
    env = env_for_manage(
        CACHE_OUTBOX_SWEEP_SECONDS="0.1",
        CACHE_KEY_PREFIX=f"{os.environ.get('CACHE_KEY_PREFIX', 'test')}-idle",
    )
    before = _commits(database)
    processes = _start(count, env)
    try:
        time.sleep(seconds)
    finally:
        _stop(processes)
    wait_until(lambda: _commits(database) == _commits(database), 10, "counts settled")
    return _commits(database) - before


def test_idle_database_load_does_not_grow_with_the_number_of_processes():
    one = _idle_commits(1, 3.0)
    four = _idle_commits(4, 3.0)
    print(f"idle transactions in 3 s: 1 process {one}, 4 processes {four}")
    assert one >= 10, "the sweeper did not run: nothing was measured"
    # Each process sweeping (2 transactions per interval each) would make this about 4x.
    assert four < 1.5 * one + 10, (one, four)


def test_a_process_that_does_not_sweep_learns_undelivered_invalidations_from_the_leader(
    alice, alice_id, make_connection, settings, tmp_path
):
    """The leader (another process) could not replay a write's invalidation: this process,
    which never saw a failure and runs no sweep, must stop reading the shard from Redis."""
    node = RedisNode(tmp_path).start()
    use_cache(settings, node.url)
    assert settings.CACHE_OUTBOX_SWEEP_SECONDS == 0  # no sweeper thread in this process
    leader = None
    try:
        make_connection(alice_id, "github")
        status_of(alice, alice_id)
        assert status_of(alice, alice_id)["cached"] is True
        node.pause()  # the write's DEL cannot be delivered: its row stays undelivered
        assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
        cache.reset_breakers()  # from here on, a process that saw no failure
        leader = _start(
            1,
            env_for_manage(
                REDIS_URL=node.url,
                CACHE_OUTBOX_SWEEP_SECONDS="0.1",
                CACHE_OUTBOX_GRACE_SECONDS="0",
                CACHE_KEY_PREFIX=settings.CACHE_KEY_PREFIX,
            ),
        )
        election = outbox.sweeper.election()
        wait_until(lambda: (election.read() or {}).get("undelivered"), 20, "the leader's verdict")
        assert not election.lead()  # the other process leads; this one follows
        outbox.sweeper.follow_once(0.1)
        assert cache.undelivered()
        node.resume()  # the old entry is served again unless this process knows better

        body = status_of(alice, alice_id)
        assert body["cached"] is False
        assert body["data"]["platforms"]["github"]["connected"] is False

        # The leader replays once Redis answers; the verdict clears and hits come back.
        def cleared() -> bool:
            outbox.sweeper.follow_once(0.1)
            return not cache.undelivered()

        wait_until(cleared, 20, "the leader's replay")
        assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is False
        assert status_of(alice, alice_id)["cached"] is True
    finally:
        if leader:
            _stop(leader)
        node.kill()
