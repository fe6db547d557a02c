"""Keys planted in a shared Redis, and a Redis that is slow rather than down.

Only connection failures, and timeouts a PING confirms, may open the breaker: a key of the
wrong type is that key's problem (a miss, and replaced), a planted lease cannot hold reads off,
planted statistics cannot break cache-stats, and no Redis text reaches a response body. A Redis
that answers late (here: DEBUG SLEEP from another client, as a saturated machine would delay
it) keeps serving hits with a longer timeout instead of sending every read to the database.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator

import pytest

from connectors import cache
from connectors.cache import State
from tests.support.clients import status_of
from tests.support.topologies import RedisNode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def own_node(settings, tmp_path) -> Iterator[RedisNode]:
    """A private redis-server (DEBUG allowed: it is ours), the app's cache pointed at it with
    the production request timeout."""
    node = RedisNode(tmp_path, "--enable-debug-command", "yes").start()
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://{node.name}/0"
    caches["default"]["OPTIONS"]["SOCKET_TIMEOUT"] = 0.025
    caches["default"]["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] = 0.025
    settings.CACHES = caches
    yield node
    node.kill()


def _key(name: str) -> str:
    return cache.full_key(name)


def test_a_key_of_the_wrong_type_is_a_miss_and_is_replaced_and_the_breaker_stays_closed(
    alice, alice_id, make_connection, own_node
):
    make_connection(alice_id, "github")
    own_node.client().hset(_key(cache.platform_status_key(alice_id)), "planted", "1")

    first, second, third = (status_of(alice, alice_id) for _ in range(3))

    assert first["cached"] is False and first["data"]["platforms"]["github"]["connected"]
    assert second["cached"] is True and third["cached"] is True  # repaired by the first fill
    assert cache.breaker.state is State.CLOSED
    assert cache.breaker.transitions == 0


def test_wrong_type_replies_never_open_the_breaker(alice, alice_id, make_connection, own_node):
    """Two WRONGTYPE replies used to open it (readyz: degraded) for every user."""
    make_connection(alice_id, "github")
    key = _key(cache.platform_status_key(alice_id))
    for _ in range(2 * cache.breaker.failure_threshold):
        own_node.client().delete(key)
        own_node.client().rpush(key, "planted")  # planted again before every read
        assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"]
    assert cache.breaker.state is State.CLOSED
    assert cache.health() == "ok"


def test_a_lease_planted_without_a_ttl_neither_holds_reads_off_nor_stops_caching(
    alice, alice_id, make_connection, own_node, settings
):
    settings.CACHE_LEASE_WAIT_MS = 300  # what a read would wait for a lease it cannot take
    make_connection(alice_id, "github")
    lease = cache.full_key(f"{cache.platform_status_key(alice_id)}:lease")
    own_node.client().set(lease, "planted")  # no expiry: no filler of ours would ever do that

    assert status_of(alice, alice_id)["cached"] is False
    assert status_of(alice, alice_id)["cached"] is True
    assert own_node.client().get(lease) is None  # taken over, then released by the fill


def test_a_lease_longer_than_ours_is_taken_over(alice, alice_id, make_connection, own_node):
    make_connection(alice_id, "github")
    lease = cache.full_key(f"{cache.platform_status_key(alice_id)}:lease")
    own_node.client().set(lease, "planted", ex=3600)

    assert status_of(alice, alice_id)["cached"] is False
    assert status_of(alice, alice_id)["cached"] is True


@pytest.mark.parametrize(
    "plant",
    [
        lambda r, key: r.set(key, "not a hash"),
        lambda r, key: r.hset(key, mapping={"hits": "many", "misses": "1.5"}),
    ],
    ids=["a string", "non-integer fields"],
)
def test_planted_statistics_never_break_cache_stats(
    service, alice, alice_id, make_connection, own_node, plant
):
    make_connection(alice_id, "github")
    plant(own_node.client(), _key("cache_stats"))
    status_of(alice, alice_id)
    status_of(alice, alice_id)  # a hit and a miss to count

    response = service.get("/api/admin/cache-stats")

    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["hits"] >= 1 and data["misses"] >= 1  # the flusher replaced the planted key
    stats = own_node.client().hgetall(_key("cache_stats"))
    assert all(value.isdigit() for value in stats.values()), stats
    assert cache.breaker.state is State.CLOSED


def test_no_redis_text_reaches_a_response_body(service, own_node):
    """A Redis that cannot be reached: cache-stats answers 503 in the API's own words only."""
    own_node.kill()
    response = service.get("/api/admin/cache-stats")

    assert response.status_code == 503
    body = response.content.decode()
    assert response.json()["error"]["code"] == "cache_unavailable"
    for leak in ("Error", "Connection", "refused", "127.0.0.1", str(own_node.port), "Redis is"):
        assert leak not in body, body


def test_a_slow_redis_does_not_open_the_breaker_and_reads_stay_hits(
    alice, alice_id, make_connection, own_node
):
    """Redis answering 50 ms late (a saturated machine) trips the 25 ms timeout, but a PING
    with a longer timeout shows it is alive: the breaker stays closed, the request timeout
    follows what Redis needs, and reads keep coming from Redis rather than the database."""
    make_connection(alice_id, "github")
    status_of(alice, alice_id)
    assert status_of(alice, alice_id)["cached"] is True
    stop = threading.Event()

    def saturate() -> None:
        client = own_node.client(timeout=5)
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            client.execute_command("DEBUG", "SLEEP", "0.05")

    busy = threading.Thread(target=saturate, daemon=True)
    busy.start()
    try:
        cached = [status_of(alice, alice_id)["cached"] for _ in range(40)]
    finally:
        stop.set()
        busy.join(10)

    assert cache.breaker.transitions == 0, "the breaker opened on a live Redis"
    assert cached[:5].count(False) >= 1, "the 25 ms timeout never tripped: nothing was tested"
    assert cached[-20:].count(True) >= 18, cached
