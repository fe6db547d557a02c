"""The freshness checker against real Postgres and Redis: service mode clean, naive mode caught.

The long form is bench/consistency.py (`make consistency`); these are short versions of the
same workloads (tests/support/workloads.py), judged by tests/support/history.py.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from connectors import cache
from tests.support import history, workloads
from tests.support.clients import use_cache

# conftest turns the postgres / redis marks into a skip without the services (a failure in CI).
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _redis_timeout_of_a_quiet_machine(settings):
    """These tests check the protocol (leases, invalidation order), with up to 100 threads in
    one process: on a loaded 2-core machine a 25 ms socket timeout would also test the machine
    (a read that times out goes to the database by design). Overload itself is make faults'."""
    use_cache(settings, settings.CACHES["default"]["LOCATION"], timeout=1.0)


# Few users and full injected delays: a short run still races on the same keys often.
SHORT = workloads.WorkloadConfig(
    operations=2500, readers=8, writers=4, users=20, max_seconds=20.0, seed=3
)


def test_checker_flags_a_read_that_began_after_a_newer_write_returned():
    w = history.WriteRecord("u", "github", invoked=1.0, returned=2.0, version=7)
    stale = history.ReadRecord("u", invoked=2.5, returned=2.6, versions=(("github", 6),))
    fresh = history.ReadRecord("u", invoked=2.5, returned=2.6, versions=(("github", 7),))
    overlapping = history.ReadRecord("u", invoked=1.5, returned=2.6, versions=(("github", 6),))
    violations = history.check([w], [stale, fresh, overlapping])
    assert [(v.read, v.seen, v.newer) for v in violations] == [(stale, 6, 7)]
    assert violations[0].staleness_ms == pytest.approx(500.0)


def test_service_mode_has_no_violations_and_naive_mode_does():
    providers = workloads.providers_for(SHORT)
    users = workloads.seed_users(SHORT.users, providers)

    service = workloads.run_workload(SHORT, users, "service")
    naive = workloads.run_workload(SHORT, users, "naive")
    print(service.summary())
    print(naive.summary())

    # Both runs really raced: plenty of writes and cache fills, not an idle cache.
    for report in (service, naive):
        assert report.operations >= SHORT.operations * 0.9, report.summary()
        assert report.writes >= 100, report.summary()
        assert report.fills >= 50, report.summary()
    assert service.violations == [], [
        (v.read.user, v.provider, v.seen, v.newer, round(v.staleness_ms, 1))
        for v in service.violations[:5]
    ]
    # The checker can fail: the textbook DEL-in-transaction + plain SET is caught.
    assert len(naive.violations) > 0, naive.summary()


def test_cold_burst_makes_one_query_and_everyone_gets_the_answer():
    [user] = workloads.seed_users(1, ["github", "spotify"])
    result = workloads.cold_burst(user, readers=100)
    assert result.errors == 0
    assert result.queries == 1, result
    assert result.answers == 100, result


@override_settings(CACHE_LEASE_MS=300, CACHE_LEASE_WAIT_MS=1000)
def test_dead_filler_costs_one_more_query_and_one_lease_ttl():
    [user] = workloads.seed_users(1, ["github"])
    result = workloads.cold_burst(user, readers=100, dead_filler=True)
    assert result.queries <= 2, result
    assert result.answers == 100, result
    # The dead lease really held everyone off until it expired (~300 ms after it was taken),
    # and then one takeover fill answered them all before anyone's 1 s wait ran out: a
    # timed-out waiter would have queried too (the query count above).
    assert result.max_latency_ms >= 250, result
    assert cache.get_cached_platform_status(user) is not None


@override_settings(CACHE_LEASE_MS=5000, CACHE_LEASE_WAIT_MS=6000)
def test_crashing_filler_hands_over_at_once():
    [user] = workloads.seed_users(1, ["github"])
    result = workloads.cold_burst(user, readers=100, failing_filler=True)
    assert result.errors == 1, result  # only the crashed filler's caller sees the error
    assert result.queries <= 2, result
    assert result.answers == 99, result
    # The crashed filler released its lease: no one waited out the 5 s lease (a plain cold
    # burst of 100 threads takes 0.15-0.5 s here, GIL contention included; the lease is long
    # so that a busy machine cannot pass for a waited-out lease).
    assert result.max_latency_ms < 5000, result


def test_hot_key_fills_about_once_per_ttl_window():
    [user] = workloads.seed_users(1, ["github"])
    # 6.5 s of a 1 s TTL: 7 windows. Before the refresh lease compared the entry (see
    # lua/refresh_lease.lua), a second reader could refresh again: 9 fills in 7 windows.
    result = workloads.hot_key(user, seconds=6.5, ttl_seconds=1.0, readers=4)
    print(f"hot key: {result.fills} fills in {result.windows} windows, {result.reads} reads")
    # Steady load: dozens of reads in every window even on a busy machine (thousands on a
    # quiet one), so that an expiry always meets concurrent readers.
    assert result.reads > 50 * result.windows, result
    assert result.fills_per_window <= 1.2, result
