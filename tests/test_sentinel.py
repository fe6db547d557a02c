"""Redis Sentinel: configured from the environment, and no invalidation lost to a failover.

One set per module (a master, a replica, three sentinels: tests/support/topologies.py); each
test waits until the sentinels agree on it again. The failover test is the one of issue 12: a
write lands after +switch-master on an old master that still accepts writes; once Sentinel has
demoted it (and its data is replaced by the new master's), no read may show the old state.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
import redis

from connectors import cache
from connectors.models import PendingInvalidation
from tests.support.clients import status_of
from tests.support.procs import env_for_manage, manage
from tests.support.topologies import SentinelSet, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory):
    # DEBUG SLEEP keeps a master busy in one test (a loaded machine's scheduling, on demand).
    topology = SentinelSet(
        tmp_path_factory.mktemp("sentinel"),
        replicas=1,
        node_args=("--enable-debug-command", "local"),
    )
    topology.start()
    yield topology
    topology.stop()


@pytest.fixture
def on_sentinel(settings, sentinel_set):
    sentinel_set.wait_stable()
    caches = copy.deepcopy(settings.CACHES)
    caches["default"] = sentinel_set.cache_settings(prefix=settings.CACHE_KEY_PREFIX)
    settings.CACHES = caches
    settings.REDIS_WAIT_REPLICAS = 1
    cache.clear_all()  # this run's keys only (conftest clears the default Redis)
    return sentinel_set


def _github(client, user_id) -> dict:
    return status_of(client, user_id)["data"]["platforms"]["github"]


def _warm_everywhere(client, user_id, topology: SentinelSet) -> str:
    """Cache the user's status and wait until every node holds it; the entry's key."""
    status_of(client, user_id)
    assert status_of(client, user_id)["cached"] is True
    key = cache.full_key(cache.platform_status_key(user_id))
    wait_until(lambda: all(n.client().get(key) for n in topology.nodes), 10, "entry replicated")
    return key


def _holds_pre_write_entry(node, key: str) -> bool:
    """Whether `node` holds the entry cached before the write (github still connected)."""
    entry = node.client().get(key)
    return entry is not None and b'"github":{"connected":true' in entry


def _undelivered(user_id) -> bool:
    return PendingInvalidation.objects.filter(user_id=user_id, delivered_at__isnull=True).exists()


def test_reads_and_invalidations_go_to_the_master_the_sentinels_name(
    alice, alice_id, make_connection, on_sentinel
):
    make_connection(alice_id, "github")
    key = _warm_everywhere(alice, alice_id, on_sentinel)
    assert on_sentinel.master().client().get(key) is not None

    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200

    # Acknowledged by the replica (WAIT) before the write returned: no node has it any more.
    assert all(node.client().get(key) is None for node in on_sentinel.nodes)
    assert not _undelivered(alice_id)
    assert _github(alice, alice_id)["connected"] is False
    assert status_of(alice, alice_id)["cached"] is True


def test_maintenance_and_statistics_work_through_sentinel(
    service, alice, alice_id, make_connection, on_sentinel
):
    make_connection(alice_id, "github")
    _warm_everywhere(alice, alice_id, on_sentinel)
    stats = service.get("/api/admin/cache-stats")
    assert stats.status_code == 200, stats.content
    assert stats.json()["data"]["keys"] >= 1
    assert cache.health() == "ok"

    assert cache.clear_all() >= 1
    assert status_of(alice, alice_id)["cached"] is False


def test_a_reply_that_timed_out_is_never_read_as_the_next_commands_answer(on_sentinel):
    """redis-py's Sentinel connections keep a connection whose read timed out; its late reply
    was then read as the answer to the next command (a WAIT counting replicas that were not
    there, a GET of another key)."""
    r = cache.redis_client()
    r.set(cache.full_key("a"), b"A", ex=60)
    r.set(cache.full_key("b"), b"B", ex=60)
    master = on_sentinel.master()
    master.pause()  # shorter than down-after-milliseconds: no failover
    try:
        with pytest.raises(redis.TimeoutError):
            r.get(cache.full_key("a"))
    finally:
        master.resume()
    wait_until(lambda: master.client().ping(), 5, "the master answering again")

    assert r.get(cache.full_key("b")) == b"B"


def test_a_del_taken_by_a_master_that_lost_its_role_still_reaches_the_new_master(
    alice, alice_id, make_connection, on_sentinel
):
    make_connection(alice_id, "github")
    key = _warm_everywhere(alice, alice_id, on_sentinel)
    old = on_sentinel.master()
    old.pause()  # the sentinels lose it and promote the replica
    new = on_sentinel.wait_for_new_master(old)
    old.resume()  # back, and a master in its own eyes: it takes writes until it is demoted
    assert old.role() == "master"

    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200

    # Sentinel demotes the old master about 10 s later, which then copies the new master's
    # data; the same REPLICAOF, sent now.
    old.client().replicaof(*new.address)
    wait_until(
        lambda: old.client().info("replication").get("master_link_status") == "up",
        30,
        "the old master demoted and in sync",
    )
    assert not _holds_pre_write_entry(new, key), "the new master serves the pre-write entry"
    for _ in range(3):
        assert _github(alice, alice_id)["connected"] is False
    assert not _undelivered(alice_id)


def test_a_replica_promoted_before_the_sentinels_switch_gets_the_del_too(
    alice, alice_id, make_connection, on_sentinel
):
    """Sentinel promotes a replica (REPLICAOF NO ONE) and names it master only a moment later
    (+switch-master, 0.9 s after the promotion in `make faults`). A DEL in between reached the
    old master only: WAIT fell short (its replica had left) and the sentinels, still naming the
    old master, confirmed it; the promoted node kept the entry and served it once they switched."""
    make_connection(alice_id, "github")
    key = _warm_everywhere(alice, alice_id, on_sentinel)
    master = on_sentinel.master()
    [replica] = on_sentinel.replicas()
    replica.client().replicaof("NO", "ONE")  # what Sentinel sends first in a failover
    try:
        assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200

        assert not _holds_pre_write_entry(replica, key), "the promoted node kept the entry"
        assert not _undelivered(alice_id)
    finally:
        replica.client().replicaof(*master.address)
        wait_until(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            30,
            "the replica following the master again",
        )


def test_a_wait_that_runs_its_full_timeout_on_a_busy_master_still_delivers(
    alice, alice_id, make_connection, on_sentinel
):
    """WAIT answers only after its own timeout (half the socket timeout) when a replica lags;
    its reply was read with the plain socket timeout, so a master busy for a little more than
    the other half (a loaded machine) failed the invalidation and tripped the breaker."""
    make_connection(alice_id, "github")
    _warm_everywhere(alice, alice_id, on_sentinel)  # a DEL of nothing is not replicated
    master = on_sentinel.master()
    [replica] = on_sentinel.replicas()
    slept: list[bool] = []
    busy = threading.Thread(target=_busy_during_wait, args=(master, slept), daemon=True)
    replica.pause()  # WAIT now waits its full 100 ms (the socket timeout here is 200 ms)
    try:
        busy.start()
        delivered = cache.invalidate_platform_status_cache(alice_id)
    finally:
        replica.resume()
        busy.join(5)

    assert slept == [True], "the master was never kept busy during the WAIT"
    assert delivered, "the invalidation failed while WAIT answered within its time"
    assert cache.breaker_state() == "closed"


def _busy_during_wait(master, slept: list[bool]) -> None:
    """Once a client is blocked in WAIT on `master`, keep the server busy for 0.25 s, so WAIT
    answers ~0.25 s after it started: later than the socket timeout (0.2 s), within it plus
    WAIT's own (0.1 s)."""
    client = master.client(timeout=5)
    deadline = time.monotonic() + 5
    while client.info("clients")["blocked_clients"] < 1:
        if time.monotonic() > deadline:
            return
        time.sleep(0.002)
    client.execute_command("DEBUG", "SLEEP", "0.25")
    slept.append(True)


def test_the_environment_configures_sentinel_end_to_end(alice_id, make_connection, sentinel_set):
    """REDIS_SENTINELS + a REDIS_URL naming the service, in a fresh process."""
    sentinel_set.wait_stable()
    make_connection(alice_id, "github")
    env = env_for_manage(
        REDIS_URL=f"redis://{sentinel_set.service}/0",
        REDIS_SENTINELS=",".join(f"{h}:{p}" for h, p in sentinel_set.sentinel_addresses),
        REDIS_SOCKET_TIMEOUT="0.5",
        REDIS_CONNECT_TIMEOUT="0.5",
    )
    script = (
        "from connectors import cache, selectors\n"
        f"reads = [selectors.platform_status_for_user(user_id='{alice_id}') for _ in range(2)]\n"
        "pool = type(cache.redis_client().connection_pool).__name__\n"
        "print([read.cached for read in reads], pool)\n"
    )
    result = manage("shell", "-v", "0", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[False, True] SentinelConnectionPool"


def test_a_manual_failover_loses_no_invalidation(alice, alice_id, make_connection, on_sentinel):
    """SENTINEL FAILOVER: the old master, too, keeps taking writes for ~10 s (last in the
    module: the set is left to settle on its own)."""
    make_connection(alice_id, "github")
    key = _warm_everywhere(alice, alice_id, on_sentinel)
    new = on_sentinel.failover()

    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200

    # The pool still talked to the old master: the DEL must have reached the new one too, or
    # its copy of the entry is what every reader gets once the old master is demoted.
    assert not _holds_pre_write_entry(new, key), "the new master serves the pre-write entry"
    assert _github(alice, alice_id)["connected"] is False
    assert status_of(alice, alice_id)["cached"] is True
    assert not _undelivered(alice_id)
