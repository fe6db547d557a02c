"""Redis access for the cache layer: every call through its shard's circuit breaker.

One breaker per shard (a Cluster's slot range, or the one Redis), "undelivered invalidations"
marks per shard, timeouts confirmed by a PING before they count (and the request timeout raised
to what Redis is observed to need), and a maintenance client with generous timeouts for work no
request waits on. docs/architecture.md ("Outages", "Failover").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django_redis.cache import RedisCache
from django_redis.pool import get_connection_factory

from connectors import metrics
from connectors.cache import clients, topology
from connectors.cache.breaker import CircuitBreaker, Permit, State
from connectors.cache.topology import ALL
from connectors.errors import CacheKeyUnreadable, CacheTimedOut, CacheUnavailable

logger = logging.getLogger("connectors.cache")

REDIS_ERRORS = clients.REDIS_ERRORS
# Commands and bulk maintenance (SCAN, epoch bumps) are not on a request path: a busy machine
# must slow them down, not fail them.
MAINTENANCE_SOCKET_TIMEOUT = 5.0
# How long Redis, adapting to what it is observed to need, may make a request wait, in
# multiples of REDIS_SOCKET_TIMEOUT; and how long the raised timeout is kept after the last
# confirmation that Redis was slow, not down.
TIMEOUT_CEILING = 10
TIMEOUT_HOLD_SECONDS = 30.0


def backend() -> Any:
    return caches["default"]


def enabled() -> bool:
    return isinstance(backend(), RedisCache)


def backend_name() -> str:
    return type(backend()).__name__


def redis_client() -> redis.Redis:
    """The request path's client (the configured, short socket timeouts)."""
    return cast(redis.Redis, backend().client.get_client(write=True))


def full_key(key: str) -> str:
    """`key` with this deployment's prefix and version, as stored in Redis."""
    return str(backend().make_key(key))


def base_timeout() -> float:
    return float(settings.CACHES["default"].get("OPTIONS", {}).get("SOCKET_TIMEOUT") or 0.025)


_maintenance_pools: dict[str, Any] = {}
_maintenance_lock = threading.Lock()


def maintenance_client(timeout: float = MAINTENANCE_SOCKET_TIMEOUT) -> Any:
    """A client on its own pools with `timeout`, for work no request waits on: a redis.Redis,
    or a RedisCluster (use connectors.cache.topology for per-node work)."""
    config = settings.CACHES["default"]
    location = config["LOCATION"]
    url = location[0] if isinstance(location, list | tuple) else location
    options = {**config.get("OPTIONS", {}), "SOCKET_TIMEOUT": timeout}
    options["SOCKET_CONNECT_TIMEOUT"] = timeout
    if options.get("CLIENT_CLASS", "").endswith("ClusterClient"):
        return clients.cluster_for(url, options)
    key = repr((url, sorted((k, repr(v)) for k, v in options.items())))
    with _maintenance_lock:
        pool = _maintenance_pools.get(key)
        if pool is None:
            factory = get_connection_factory(options=options)
            # Not factory.connect(): django-redis caches pools by URL alone, and would hand back
            # the request path's pool with its short timeouts.
            pool = _maintenance_pools[key] = factory.get_connection_pool(
                factory.make_connection_params(url)
            )
    return redis.Redis(connection_pool=pool)


def _new_breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        failure_threshold=max(1, settings.CACHE_BREAKER_THRESHOLD),
        cooldown=settings.CACHE_BREAKER_COOLDOWN_SECONDS,
    )


breaker = _new_breaker("redis")  # the one Redis (single node, Sentinel)
_shard_breakers: dict[int, CircuitBreaker] = {}
_shard_lock = threading.Lock()
# Started in a thread of its own when a breaker asks for a probe (connectors.cache.recovery).
_probe: Callable[[int], None] | None = None


def on_probe(probe: Callable[[int], None]) -> None:
    global _probe
    _probe = probe


def breaker_on() -> bool:
    return bool(settings.CACHE_BREAKER_THRESHOLD > 0)


def breaker_for(shard: int) -> CircuitBreaker:
    if shard == ALL:
        return breaker
    found = _shard_breakers.get(shard)
    if found is None:
        with _shard_lock:
            found = _shard_breakers.setdefault(shard, _new_breaker(f"redis shard {shard}"))
    return found


def breakers() -> list[CircuitBreaker]:
    return [breaker, *list(_shard_breakers.values())]


def reset_breakers() -> None:
    """Close every breaker; shard breakers are made anew (with the settings of now), and a
    request timeout raised for a slow Redis is forgotten (the next slow call raises it anew,
    on the clients of now)."""
    global _timeout_now
    breaker.reset()
    with _shard_lock:
        _shard_breakers.clear()
    with _timeout_lock:
        _timeout_now = 0.0


def call[T](
    operation: Callable[[Any], T],
    *,
    key: str | None = None,
    bypass_breaker: bool = False,
    force: bool = False,
) -> T:
    """Run one Redis operation through the breaker of `key`'s shard; CacheUnavailable if it
    cannot (CacheKeyUnreadable if Redis answered with an error).

    `bypass_breaker`: neither asks nor steers a breaker (background work, the probe itself).
    `force`: tries even while the breaker is open, without counting the outcome. Invalidations
    use it: other processes may already be using a Redis this one still skips, and a skipped
    DEL would leave their leases alive, so a fill of the pre-write row could land.
    """
    r = redis_client()
    shard = ALL if key is None or not topology.is_cluster(r) else topology.shard_of(r, key)
    guarded = breaker_on() and not bypass_breaker
    chosen = breaker if shard == ALL else breaker_for(shard)
    if guarded:
        if shard != ALL and shard in _undelivered and not force:
            raise CacheUnavailable("Redis skipped: undelivered invalidations for this shard")
        permit = chosen.allow()
        if permit is Permit.PROBE:
            if _probe is None:
                chosen.probe_succeeded()  # nothing to check before using Redis again
            else:
                threading.Thread(
                    target=_probe, args=(shard,), name="redis-probe", daemon=True
                ).start()
        if permit is not Permit.ALLOW:
            if not force:
                raise CacheUnavailable("Redis skipped: circuit breaker open")
            guarded = False
    try:
        result = operation(r)
    except REDIS_ERRORS as e:
        metrics.record_redis_error()
        kind = clients.failure_kind(e)
        if guarded:
            _count(chosen, shard, kind, e)
        if kind == "reply":
            raise CacheKeyUnreadable(f"Redis answered with an error: {e}") from e
        if kind == "slow":
            isolated = guarded and chosen.consecutive_timeouts <= 1
            raise CacheTimedOut(f"Redis is unavailable: {e}", isolated=isolated) from e
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e
    if guarded:
        chosen.record_success()
    return result


def _count(chosen: CircuitBreaker, shard: int, kind: str, error: BaseException) -> None:
    if kind == "down":
        chosen.record_failure(error)
    elif kind == "slow":
        round_ = chosen.record_timeout()
        if round_:
            threading.Thread(
                target=_confirm, args=(chosen, round_, shard), name="redis-confirm", daemon=True
            ).start()
    # "reply": the server answered, so it is up (a planted key of the wrong type, a script
    # error); that key is the caller's to handle, the breaker stays as it is.


def confirm_timeout() -> float:
    return max(0.25, 4 * base_timeout())


def _confirm(chosen: CircuitBreaker, round_: int, shard: int) -> None:
    """Timeouts on the request path: is Redis down, or only slow (the machine is busy)? A PING
    with a longer timeout decides. Always reports, so a breaker never waits forever."""
    verdict: object = "the confirmation failed"
    try:
        started = time.perf_counter()
        topology.ping(maintenance_client(confirm_timeout()), shard)
        latency = time.perf_counter() - started
        chosen.timeouts_refuted(round_)
        verdict = None
        _raise_timeout(latency)
    except REDIS_ERRORS as e:
        verdict = f"no answer to PING within {confirm_timeout():g} s: {e}"
    finally:
        if verdict is not None:
            chosen.timeouts_confirmed(round_, verdict)


_timeout_now = 0.0
_timeout_until = 0.0
_timeout_lock = threading.Lock()


def _raise_timeout(latency: float) -> None:
    """Redis answered, only later than the request timeout: wait that long for it from now on
    (four times the PING's latency, at most TIMEOUT_CEILING x the configured timeout), for
    TIMEOUT_HOLD_SECONDS. A read served late from Redis is cheaper than one more query on a
    busy database."""
    global _timeout_now, _timeout_until
    base = base_timeout()
    wanted = min(max(4 * latency, 2 * base), TIMEOUT_CEILING * base)
    with _timeout_lock:
        _timeout_until = time.monotonic() + TIMEOUT_HOLD_SECONDS
        if wanted <= max(_timeout_now, base):
            return
        _timeout_now = wanted
    logger.warning(
        "Redis is slow, not down (PING took %.0f ms): request timeout %.0f ms for %g s",
        latency * 1000,
        wanted * 1000,
        TIMEOUT_HOLD_SECONDS,
    )
    topology.set_socket_timeout(redis_client(), wanted)
    timer = threading.Timer(TIMEOUT_HOLD_SECONDS, _restore_timeout)
    timer.daemon = True
    timer.start()


def _restore_timeout() -> None:
    global _timeout_now
    with _timeout_lock:
        remaining = _timeout_until - time.monotonic()
        if remaining > 0 or not _timeout_now:
            if remaining > 0:
                timer = threading.Timer(remaining, _restore_timeout)
                timer.daemon = True
                timer.start()
            return
        _timeout_now = 0.0
    logger.info("Redis request timeout back to %.0f ms", base_timeout() * 1000)
    topology.set_socket_timeout(redis_client(), base_timeout())


def call_maintenance[T](
    operation: Callable[[Any], T], timeout: float = MAINTENANCE_SOCKET_TIMEOUT
) -> T:
    """Run bulk work on the maintenance client, ignoring the breakers (not a request's)."""
    try:
        return operation(maintenance_client(timeout))
    except REDIS_ERRORS as e:
        metrics.record_redis_error()
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e


def breaker_state() -> str | None:
    """The breakers' state for reports (the worst one), or None when caching is off or there
    is no breaker."""
    if not enabled() or not breaker_on():
        return None
    states = {each.state for each in breakers()}
    for worst in (State.OPEN, State.HALF_OPEN):
        if worst in states:
            return worst.value
    return State.CLOSED.value


def breaker_closed() -> bool:
    return not breaker_on() or all(each.state is State.CLOSED for each in breakers())


# Shards with invalidations known to be undelivered that cannot be delivered now (the host's
# sweeper says so): Redis may hold stale entries there even though this process saw no failure.
_undelivered: frozenset[int] = frozenset()


def undelivered() -> bool:
    return bool(_undelivered)


def undelivered_shards() -> frozenset[int]:
    return _undelivered


def set_undelivered(value: bool | Iterable[int]) -> None:
    """Mark shards (True: the one Redis) as holding undelivered invalidations, or none."""
    global _undelivered
    shards = frozenset([ALL] if value is True else [] if value is False else value)
    if shards and not _undelivered:
        logger.warning(
            "Undelivered invalidations pending: reading from the database until they are replayed"
        )
    elif not shards and _undelivered:
        logger.info("Pending invalidations replayed: reading from Redis again")
    _undelivered = shards


def trip(key: str, reason: str) -> None:
    """An invalidation of `key` could not be delivered: open its shard's breaker, so that this
    process reads nothing from that shard until a probe has replayed the outbox there (its
    own writes, read at once; the other processes learn it from the sweeper)."""
    if breaker_on():
        breaker_for(topology.shard_of(redis_client(), key)).trip(reason)


def foldable(key: str, others: Sequence[str]) -> bool:
    """Whether `others` may ride on `key`'s call as one script (counted_read): on a Cluster
    only within `key`'s slot. Only while that shard's breaker is closed, so that call() never
    skips it: a skipped call would skip the others' work too."""
    r = redis_client()
    if not topology.is_cluster(r):
        return not breaker_on() or breaker.is_closed()
    if not topology.same_slot([key, *others]):
        return False
    shard = topology.shard_of(r, key)
    return shard not in _undelivered and (not breaker_on() or breaker_for(shard).is_closed())


def readable() -> bool:
    """Whether reads may use Redis right now (in-memory checks only: every read pays them).
    A Cluster's shards are checked per key, in call()."""
    return enabled() and ALL not in _undelivered and (not breaker_on() or not breaker.is_open())
