"""Redis access for the cache layer: every call through the circuit breaker.

Also the process-wide "undelivered invalidations" flag, and a separate maintenance client with
generous timeouts for commands and bulk work that no request waits on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from django_redis.pool import get_connection_factory

from connectors import metrics
from connectors.cache.breaker import CircuitBreaker, Permit, State
from connectors.errors import CacheUnavailable

logger = logging.getLogger("connectors.cache")

REDIS_ERRORS = (redis.RedisError, OSError, ConnectionInterrupted)
# Commands and bulk maintenance (SCAN, epoch bumps) are not on a request path: a busy machine
# must slow them down, not fail them.
MAINTENANCE_SOCKET_TIMEOUT = 5.0


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


_maintenance_pools: dict[tuple[str, str], Any] = {}
_maintenance_lock = threading.Lock()


def maintenance_client() -> redis.Redis:
    """A client on its own pool with MAINTENANCE_SOCKET_TIMEOUT, for work no request waits on."""
    config = settings.CACHES["default"]
    location = config["LOCATION"]
    url = location[0] if isinstance(location, list | tuple) else location
    options = {
        **config.get("OPTIONS", {}),
        "SOCKET_TIMEOUT": MAINTENANCE_SOCKET_TIMEOUT,
        "SOCKET_CONNECT_TIMEOUT": MAINTENANCE_SOCKET_TIMEOUT,
    }
    factory = get_connection_factory(options=options)
    key = (url, repr(sorted(options.items(), key=lambda item: item[0])))
    with _maintenance_lock:
        pool = _maintenance_pools.get(key)
        if pool is None:
            # Not factory.connect(): django-redis caches pools by URL alone, and would hand back
            # the request path's pool with its short timeouts.
            pool = _maintenance_pools[key] = factory.get_connection_pool(
                factory.make_connection_params(url)
            )
    return redis.Redis(connection_pool=pool)


breaker = CircuitBreaker(
    "redis",
    failure_threshold=max(1, settings.CACHE_BREAKER_THRESHOLD),
    cooldown=settings.CACHE_BREAKER_COOLDOWN_SECONDS,
)
# Started in a thread of its own when the breaker asks for a probe (connectors.cache.recovery).
_probe: Callable[[], None] | None = None


def on_probe(probe: Callable[[], None]) -> None:
    global _probe
    _probe = probe


def breaker_on() -> bool:
    return bool(settings.CACHE_BREAKER_THRESHOLD > 0)


def call[T](
    operation: Callable[[redis.Redis], T], *, bypass_breaker: bool = False, force: bool = False
) -> T:
    """Run one Redis operation through the circuit breaker; CacheUnavailable if it cannot.

    `bypass_breaker`: neither asks nor steers the breaker (background work, the probe itself).
    `force`: tries even while the breaker is open, without counting the outcome. Invalidations
    use it: other processes may already be using a Redis this one still skips, and a skipped
    DEL would leave their leases alive, so a fill of the pre-write row could land.
    """
    guarded = breaker_on() and not bypass_breaker
    if guarded:
        permit = breaker.allow()
        if permit is Permit.PROBE:
            if _probe is None:
                breaker.probe_succeeded()  # nothing to check before using Redis again
            else:
                threading.Thread(target=_probe, name="redis-probe", daemon=True).start()
        if permit is not Permit.ALLOW:
            if not force:
                raise CacheUnavailable("Redis skipped: circuit breaker open")
            guarded = False
    try:
        result = operation(redis_client())
    except REDIS_ERRORS as e:
        metrics.record_redis_error()
        if guarded:
            breaker.record_failure(e)
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e
    if guarded:
        breaker.record_success()
    return result


def call_maintenance[T](operation: Callable[[redis.Redis], T]) -> T:
    """Run bulk work on the maintenance client, ignoring the breaker (it is not a request's)."""
    try:
        return operation(maintenance_client())
    except REDIS_ERRORS as e:
        metrics.record_redis_error()
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e


def breaker_state() -> str | None:
    """The breaker's state for reports, or None when caching is off or there is no breaker."""
    return breaker.state.value if enabled() and breaker_on() else None


def breaker_closed() -> bool:
    return not breaker_on() or breaker.state is State.CLOSED


# Set by the outbox sweeper when invalidations are known to be undelivered and cannot be
# delivered now: Redis may then hold stale entries even though this process saw no failure.
_undelivered = threading.Event()


def undelivered() -> bool:
    return _undelivered.is_set()


def set_undelivered(value: bool) -> None:
    if value and not _undelivered.is_set():
        logger.warning(
            "Undelivered invalidations pending: reading from the database until they are replayed"
        )
        _undelivered.set()
    elif not value and _undelivered.is_set():
        logger.info("Pending invalidations replayed: reading from Redis again")
        _undelivered.clear()


def readable() -> bool:
    """Whether reads may use Redis right now (in-memory checks only: every read pays them)."""
    return enabled() and not _undelivered.is_set() and (not breaker_on() or not breaker.is_open())
