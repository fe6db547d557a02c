"""Redis Cluster: every shard used, replays and bulk work per slot, one breaker per shard.

One cluster per module (three masters with a replica each: tests/support/topologies.py). The
failover test pauses one master until its replica takes over: the other shards' users must
keep their hits throughout, and the failed shard must come back (its probe never dies) with
the write made during the outage.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import psycopg
import pytest

from connectors import cache
from connectors.cache import State, listener, outbox
from tests.support.clients import status_of
from tests.support.topologies import ClusterSet

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
TABLE = "connectors_platformconnection"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    topology = ClusterSet(tmp_path_factory.mktemp("cluster"))
    topology.start()
    yield topology
    topology.stop()


@pytest.fixture
def on_cluster(settings, cluster):
    cluster.wait_healthy()
    caches = copy.deepcopy(settings.CACHES)
    caches["default"] = cluster.cache_settings(prefix=settings.CACHE_KEY_PREFIX)
    caches["throttle"] = caches["default"]  # rate limits in the cluster too, as deployed
    settings.CACHES = caches
    settings.REDIS_WAIT_REPLICAS = 1
    settings.CACHE_BREAKER_COOLDOWN_SECONDS = 0.3
    cache.reset_breakers()
    cache.clear_all()  # this run's keys only (conftest clears the default Redis)
    return cluster


def users_by_master(cluster: ClusterSet, per_master: int) -> dict[int, list[str]]:
    """`per_master` new user ids whose status key lives on each master (by port)."""
    found: dict[int, list[str]] = {m.port: [] for m in cluster.masters()}
    while any(len(users) < per_master for users in found.values()):
        user = str(uuid.uuid4())
        port = cluster.master_for_key(f"{{{user}}}").port
        if len(found[port]) < per_master:
            found[port].append(user)
    return found


def _github(client, user_id) -> dict[str, Any]:
    return status_of(client, user_id)["data"]["platforms"]["github"]


def test_reads_fills_and_invalidations_work_on_every_shard(service, make_connection, on_cluster):
    for users in users_by_master(on_cluster, 1).values():
        [user] = users
        make_connection(user, "github")
        assert [status_of(service, user)["cached"] for _ in range(2)] == [False, True]
        assert service.delete(f"/api/connectors/github/{user}").status_code == 200
        assert _github(service, user)["connected"] is False
        assert status_of(service, user)["cached"] is True
    assert cache.breaker_state() == "closed"


def test_a_user_token_is_rate_limited_through_the_cluster(alice, alice_id, on_cluster, settings):
    """The throttle's pipeline (INCR, EXPIRE, PTTL per limit) spans slots: a cluster pipeline
    of single-key commands."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "user": "3/min"}
    codes = [alice.get(f"/api/connectors/status/{alice_id}").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_writes_by_another_program_are_replayed_per_slot(
    service, make_connection, on_cluster, settings
):
    """One UPDATE touching users of every shard: the sweeper's replay used a pipelined
    two-key DEL, which a cluster pipeline refuses (RedisClusterException, not a RedisError)."""
    users = [u for group in users_by_master(on_cluster, 2).values() for u in group]
    for user in users:
        make_connection(user, "github")
        status_of(service, user)
        assert status_of(service, user)["cached"] is True
    params = listener.conninfo_from_settings()
    with psycopg.connect(autocommit=True, **params) as other:
        other.execute(
            f"UPDATE {TABLE} SET last_sync_status = 'failed' WHERE user_id = ANY(%s)",  # noqa: S608
            [[uuid.UUID(u) for u in users]],
        )
    settings.CACHE_OUTBOX_GRACE_SECONDS = 0

    assert outbox.sweep_once()

    assert not cache.undelivered()
    for user in users:
        assert _github(service, user)["last_sync_status"] == "failed"


def test_maintenance_and_statistics_run_on_every_master(service, make_connection, on_cluster):
    users = [u for group in users_by_master(on_cluster, 2).values() for u in group]
    for user in users:
        make_connection(user, "github")
        status_of(service, user)
    stats = service.get("/api/admin/cache-stats")
    assert stats.status_code == 200, stats.content
    assert stats.json()["data"]["keys"] >= len(users)
    assert cache.health() == "ok"

    assert cache.invalidate_all_platform_status() == len(users)
    assert all(status_of(service, u)["cached"] is False for u in users)
    assert cache.clear_all() >= len(users)


def test_one_shards_failover_costs_only_its_own_users_hits(service, make_connection, on_cluster):
    groups = users_by_master(on_cluster, 2)
    for user in (u for group in groups.values() for u in group):
        make_connection(user, "github")
        status_of(service, user)
    failing = on_cluster.masters()[0]
    failing_users = groups[failing.port]
    healthy = [u for port, group in groups.items() if port != failing.port for u in group]
    for user in healthy + failing_users:
        assert status_of(service, user)["cached"] is True

    failing.pause()
    try:
        # A write during the outage: its DEL cannot reach the shard, and is kept for replay.
        assert service.delete(f"/api/connectors/github/{failing_users[0]}").status_code == 200
        healthy_hits, healthy_reads, stale, recovered = 0, 0, 0, False
        deadline = time.monotonic() + 40
        while not recovered and time.monotonic() < deadline:
            for user in healthy:
                healthy_reads += 1
                healthy_hits += status_of(service, user)["cached"] is True
            reads = [status_of(service, u) for u in failing_users]
            stale += reads[0]["data"]["platforms"]["github"]["connected"] is True
            recovered = all(read["cached"] for read in reads)
        new = on_cluster.wait_for_new_master(failing, timeout=5)
    finally:
        failing.resume()

    assert recovered, "the failed shard never came back: its breaker stayed open"
    # The target; with one breaker for the whole cluster it was about 0 meanwhile.
    assert healthy_hits >= 0.95 * healthy_reads, f"{healthy_hits} hits in {healthy_reads} reads"
    assert stale == 0, "the write made during the outage was not seen"
    assert new.port != failing.port
    assert _github(service, failing_users[0])["connected"] is False
    assert all(b.state is State.CLOSED for b in cache.store.breakers())
