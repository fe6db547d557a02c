"""Redis killed, paused, restarted empty or with its data, and closing idle connections.

Each test owns its redis-server (conftest's own_redis): the shared one is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from connectors import cache, metrics
from connectors.cache import State, outbox, recovery
from connectors.models import PendingInvalidation
from tests.support.clients import status_of, use_cache
from tests.support.topologies import RedisNode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

COOLDOWN = 0.3


@pytest.fixture(autouse=True)
def _short_cooldown(monkeypatch):
    monkeypatch.setattr(cache.breaker, "cooldown", COOLDOWN)


def _github(client, user_id) -> dict:
    return status_of(client, user_id)["data"]["platforms"]["github"]


def _warm(client, user_id) -> None:
    status_of(client, user_id)
    assert status_of(client, user_id)["cached"] is True


def _pending(user_id) -> bool:
    return PendingInvalidation.objects.filter(user_id=user_id, delivered_at__isnull=True).exists()


def _recover() -> None:
    """Wait out the cool-down, trigger the background probe with a read, and wait for it."""
    time.sleep(COOLDOWN + 0.05)
    cache.get_cached_platform_status(str(uuid.uuid4()))
    deadline = time.monotonic() + 5
    while cache.breaker.state is not State.CLOSED and time.monotonic() < deadline:
        time.sleep(0.01)


def _open_breaker(client, user_id) -> None:
    """Read until the breaker opens (invalidations are still attempted through it).

    To lose an invalidation for sure, the tests kill Redis (the DEL is refused) and restart it
    with its data: a DEL sent to a paused Redis is not lost, it waits in the socket and runs on
    SIGCONT.
    """
    for _ in range(cache.breaker.failure_threshold):
        assert status_of(client, user_id)["cached"] is False
    # A paused Redis times out: the breaker opens once a PING confirms it is not just slow.
    deadline = time.monotonic() + 10
    while cache.breaker.state is not State.OPEN:
        assert time.monotonic() < deadline, "the breaker did not open"
        time.sleep(0.01)


def test_a_killed_redis_opens_the_breaker_and_reads_go_to_the_database(
    alice, alice_id, make_connection, own_redis
):
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_redis.kill()
    for _ in range(5):
        body = status_of(alice, alice_id)
        assert body["cached"] is False
        assert body["data"]["platforms"]["github"]["connected"] is True
    assert cache.breaker.state is State.OPEN
    assert cache.health() == "degraded"


def test_a_write_during_the_outage_is_replayed_when_redis_comes_back_empty(
    alice, alice_id, make_connection, own_redis
):
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_redis.kill()
    _open_breaker(alice, alice_id)
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    assert _pending(alice_id)  # the invalidation could not be delivered, and is kept
    assert _github(alice, alice_id)["connected"] is False
    own_redis.start()
    _recover()
    assert cache.breaker.state is State.CLOSED
    assert _github(alice, alice_id)["connected"] is False
    assert not _pending(alice_id)
    assert status_of(alice, alice_id)["cached"] is True


def test_a_paused_redis_comes_back_with_old_data_and_none_of_it_is_served(
    alice, alice_id, bob, bob_id, make_connection, own_redis
):
    make_connection(alice_id, "github")
    make_connection(bob_id, "github")
    _warm(alice, alice_id)
    _warm(bob, bob_id)
    own_redis.pause()
    _open_breaker(alice, alice_id)
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    assert _github(alice, alice_id)["connected"] is False  # from the DB meanwhile
    own_redis.resume()
    # Redis still holds alice's old entry; the breaker replays before it closes.
    _recover()
    assert cache.breaker.state is State.CLOSED
    assert _github(alice, alice_id)["connected"] is False
    # Only what was written during the outage was dropped: bob is still a hit.
    assert status_of(bob, bob_id)["cached"] is True


def test_without_the_replay_a_redis_restarted_with_its_data_serves_stale_data(
    alice, alice_id, make_connection, own_persistent_redis, monkeypatch
):
    """Proof the replay matters: the same outage with a breaker that closes at once."""
    monkeypatch.setattr(recovery, "_replay_and_check_populated", lambda *_: (True, False))
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_persistent_redis.kill()
    _open_breaker(alice, alice_id)
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    own_persistent_redis.start()
    _recover()
    body = status_of(alice, alice_id)
    assert body["cached"] is True
    assert body["data"]["platforms"]["github"]["connected"] is True  # stale


def test_a_process_that_saw_no_failure_learns_of_lost_invalidations_from_the_outbox(
    alice, alice_id, make_connection, own_persistent_redis, settings
):
    """Another process's write could not invalidate; this process's breaker never opened."""
    settings.CACHE_OUTBOX_GRACE_SECONDS = 0
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_persistent_redis.kill()
    _open_breaker(alice, alice_id)  # the writing process's breaker
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200  # DEL refused
    cache.breaker.reset()  # from here on, a process that never saw a failure
    outbox.sweep_once()  # cannot replay: Redis is unreachable
    assert cache.health() == "degraded"
    own_persistent_redis.start()  # with alice's old entry
    # Until the sweeper replays, this process reads from the database, not the stale entry.
    body = status_of(alice, alice_id)
    assert body["cached"] is False
    assert body["data"]["platforms"]["github"]["connected"] is False
    outbox.sweep_once()
    assert not _pending(alice_id)
    assert _github(alice, alice_id)["connected"] is False
    assert status_of(alice, alice_id)["cached"] is True


def test_without_the_sweeper_that_process_would_serve_the_stale_entry(
    alice, alice_id, make_connection, own_persistent_redis
):
    """Proof the test above can fail: skip the sweeps and the old entry is served."""
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_persistent_redis.kill()
    _open_breaker(alice, alice_id)
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    cache.breaker.reset()
    own_persistent_redis.start()
    assert _github(alice, alice_id)["connected"] is True  # stale: what the sweeper prevents


def test_an_invalidation_is_attempted_even_while_the_breaker_is_open(
    alice, alice_id, make_connection, own_redis
):
    """Another process may be using Redis again already: a write must not skip its DEL, or a
    lease taken there before the write would let the pre-write row be cached."""
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_redis.pause()
    _open_breaker(alice, alice_id)
    own_redis.resume()  # back, but this process's breaker is still open (cool-down)
    assert cache.breaker.is_open()
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    key = cache.full_key(cache.platform_status_key(alice_id))
    assert own_redis.client().get(key) is None
    assert not _pending(alice_id)


def test_redis_restarted_with_its_data_is_not_trusted_until_replayed(
    alice, alice_id, make_connection, own_persistent_redis
):
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_persistent_redis.kill()
    _open_breaker(alice, alice_id)
    assert alice.post(f"/api/connectors/reset/{alice_id}").status_code == 200
    own_persistent_redis.start()
    key = cache.full_key(cache.platform_status_key(alice_id))
    assert own_persistent_redis.client().get(key) is not None  # the old entry is back
    _recover()
    assert cache.breaker.state is State.CLOSED
    assert _github(alice, alice_id)["connected"] is False


def test_the_server_closing_idle_connections_costs_no_failed_request(
    alice, alice_id, make_connection, own_redis
):
    """Upstash-like: the server drops idle clients. redis-py's pool notices a closed socket when
    it hands the connection out and reconnects; retry-once (settings) covers a close that
    races with the command itself."""
    make_connection(alice_id, "github")
    own_redis.client().config_set("timeout", 1)
    _warm(alice, alice_id)
    time.sleep(2.2)  # the server closes this process's pooled connections meanwhile
    assert status_of(alice, alice_id)["cached"] is True
    assert cache.breaker.consecutive_failures == 0
    assert cache.breaker.transitions == 0


def test_a_redis_that_came_back_empty_is_rewarmed_with_recently_served_users(
    alice, alice_id, make_connection, own_redis
):
    make_connection(alice_id, "github")
    make_connection(alice_id, "spotify")
    _warm(alice, alice_id)
    own_redis.kill()
    _open_breaker(alice, alice_id)
    assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
    own_redis.start()
    assert cache.get_cached_platform_status(alice_id) is None  # empty, and the breaker is open
    _recover()  # reads another user only: nothing here reads alice
    deadline = time.monotonic() + 5
    while cache.get_cached_platform_status(alice_id) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    warmed = cache.get_cached_platform_status(alice_id)
    assert warmed is not None
    assert warmed["platforms"]["github"]["connected"] is False  # the outage's write included
    assert warmed["platforms"]["spotify"]["connected"] is True
    assert status_of(alice, alice_id)["cached"] is True


def _wait_cached(user_id: str, seconds: float = 5) -> dict | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = cache.get_cached_platform_status(user_id)
        if found is not None:
            return found
        time.sleep(0.02)
    return None


def test_a_redis_that_lost_its_data_is_rewarmed_with_the_most_active_users(
    alice, alice_id, bob_id, make_connection, own_redis
):
    make_connection(alice_id, "github")
    make_connection(bob_id, "github")  # active, but never read by this process
    _warm(alice, alice_id)
    cache.counters.flush()  # traffic marks Redis as holding data (the sentinel)
    own_redis.kill()
    _open_breaker(alice, alice_id)
    own_redis.start()  # empty: the sentinel is gone
    _recover()
    assert _wait_cached(bob_id) is not None


def test_a_redis_that_kept_its_data_gets_only_the_recent_users_back(
    alice, alice_id, bob_id, make_connection, own_redis
):
    """Proof the test above can fail: after a pause the sentinel survives, no full warm-up."""
    make_connection(alice_id, "github")
    make_connection(bob_id, "github")
    _warm(alice, alice_id)
    cache.counters.flush()
    own_redis.pause()
    _open_breaker(alice, alice_id)
    own_redis.resume()
    _recover()
    assert _wait_cached(alice_id) is not None
    assert _wait_cached(bob_id, seconds=1) is None


@pytest.fixture
def unresponsive_database() -> Iterator[Callable[[], None]]:
    """Calling it points this process's database connection at a server that accepts TCP
    connections and never answers (a database host that hangs): connecting fails after
    libpq's minimum connect_timeout, 2 s. Restored afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept_and_say_nothing, daemon=True)
    acceptor.start()
    saved = connection.settings_dict.copy()

    def hang() -> None:
        connection.close()
        connection.settings_dict.update(
            HOST="127.0.0.1",
            PORT=listener.getsockname()[1],
            OPTIONS={**saved.get("OPTIONS", {}), "connect_timeout": 2},
        )

    yield hang
    stop.set()
    acceptor.join(5)
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)
    for sock in [listener, *accepted]:
        sock.close()


def test_one_failed_redis_read_while_the_database_hangs_still_serves_the_cached_user(
    alice, alice_id, make_connection, own_redis, unresponsive_database
):
    make_connection(alice_id, "github")
    _warm(alice, alice_id)
    own_redis.pause()  # the next GET times out: one failure, the breaker stays closed
    unresponsive_database()
    threading.Timer(0.3, own_redis.resume).start()  # back while the DB connect still hangs

    body = status_of(alice, alice_id)

    # Without the second GET this request would answer 503 although alice's entry was there.
    assert body["cached"] is True
    assert body["data"]["platforms"]["github"]["connected"] is True
    assert cache.breaker.state is State.CLOSED


def test_a_redis_restored_from_an_older_snapshot_gets_recent_invalidations_again(
    alice, alice_id, make_connection, settings, tmp_path
):
    """A DEL Redis acknowledged, then lost: the server restarts from a snapshot taken before
    it (or a replica that never got it is promoted). No request failed, no row is pending; the
    sweeper sees a new run id and replays the retention window."""
    node = RedisNode(tmp_path).start()
    try:
        use_cache(settings, node.url)
        make_connection(alice_id, "github")
        _warm(alice, alice_id)
        outbox.sweep_once()  # the sweeper has seen this server
        node.client().save()  # a snapshot holding alice's entry
        assert alice.delete(f"/api/connectors/github/{alice_id}").status_code == 200
        assert not _pending(alice_id)  # delivered
        node.kill()
        node.start()  # from the snapshot: the DEL is gone and the old entry is back
        assert node.client().get(cache.full_key(cache.platform_status_key(alice_id)))

        outbox.sweep_once()

        assert _github(alice, alice_id)["connected"] is False
        assert cache.breaker.transitions == 0  # nothing failed that a breaker could see
    finally:
        node.kill()


def test_a_fill_that_times_out_on_a_busy_redis_is_retried_and_cached(alice_id, own_redis, settings):
    """A cold burst's filler whose store timed out (the machine, not Redis, was slow) would
    leave every reader waiting on its lease to query the database on its own."""
    document = {"user_id": alice_id, "platforms": {}}
    loads = 0
    # Writes (FILL is a script that writes) wait 2.5 request timeouts: the fill times out,
    # a retry with the confirmation's timeout (4 request timeouts) gets through.
    pause_ms = int(settings.CACHES["default"]["OPTIONS"]["SOCKET_TIMEOUT"] * 2500)

    def load_then_stall_redis_writes() -> dict:
        nonlocal loads
        loads += 1
        own_redis.client().execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")
        return document

    first = cache.read_platform_status(alice_id, load_then_stall_redis_writes)
    assert first.cached is False

    def must_not_load() -> dict:
        raise AssertionError("the entry the filler loaded was not cached")

    second = cache.read_platform_status(alice_id, must_not_load)
    assert second.cached is True
    assert second.data == document
    assert loads == 1


def test_a_read_that_times_out_once_asks_redis_again_instead_of_the_database(
    alice_id, own_redis, settings
):
    document = {"user_id": alice_id, "platforms": {}}
    loads = 0

    def load() -> dict:
        nonlocal loads
        loads += 1
        return document

    # Redis stalls for 1.5 request timeouts: the first ask times out, the second is answered.
    pause_ms = int(settings.CACHES["default"]["OPTIONS"]["SOCKET_TIMEOUT"] * 1500)
    own_redis.client().execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    assert cache.read_platform_status(alice_id, load).cached is False
    # The retried ask took the lease and cached what it loaded: no second load.
    assert cache.read_platform_status(alice_id, load).cached is True
    assert loads == 1


def test_timeouts_in_a_row_are_not_asked_twice(alice_id, own_redis):
    """A stopped Redis: only the first timed-out read asks again; the next goes straight to the
    database (asking twice would double what every request pays until the breaker opens)."""
    document = {"user_id": alice_id, "platforms": {}}

    def failed_redis_calls() -> float:
        return metrics.REGISTRY.get_sample_value("connectors_redis_errors_total") or 0.0

    # Earlier tests' hit/miss counts would be flushed to Redis in the background meanwhile.
    cache.counters.flush()
    own_redis.pause()
    try:
        asked = []
        for _ in range(2):
            before = failed_redis_calls()
            assert cache.read_platform_status(alice_id, lambda: document).cached is False
            asked.append(failed_redis_calls() - before)
    finally:
        own_redis.resume()
    # Nothing else fails meanwhile: the statistics were flushed, and background work on the
    # maintenance client (5 s timeouts) cannot time out within this test.
    assert asked == [2, 1]
