"""API rate limits: per user and per IP, stricter on the OAuth endpoints, backed by the cache.

One throttle class checks every limit of a request in one Redis round trip (INCR + EXPIRE NX +
PTTL per counter: a fixed window from the window's first request, which admits up to twice the
rate across a boundary, fine for abuse protection). On a user's own status read that round trip
also reads the status entry (the cache layer's counted read), so a hit is one round trip in all;
otherwise it is a pipeline. DRF's SimpleRateThrottle is the fallback when the throttle cache is
not Redis. The service role is exempt: it is the project's own backend, and a leaked service key
is not something a rate limit fixes.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest
from redis.exceptions import RedisClusterException
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from connectors import cache
from connectors.auth import SupabasePrincipal
from connectors.errors import InvalidUserId
from connectors.ids import strict_user_id

logger = logging.getLogger("connectors.api")

CACHE_ALIAS = "throttle"
OAUTH_ACTIONS = frozenset({"authorize", "callback"})
# Where the throttle leaves the status entry it read, and the fast path the verdict it got
# (request.META: nothing a client sends can name these keys, every header arrives as HTTP_*).
PREFETCH_META = "connectors.prefetched_status"
VERDICT_META = "connectors.throttle_verdict"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    wait: float | None


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str
    ident: str
    num_requests: int
    duration: int

    @property
    def key(self) -> str:
        # The hash tag puts a user's counter in the slot of the user's status entry, so that a
        # Redis Cluster can take both in one script (counted read).
        return f"throttle:{self.scope}:{{{self.ident}}}"


def _backend() -> Any:
    # A CACHES without the alias (a deployment's own settings, a test's override) throttles
    # through the default cache rather than failing every request.
    return caches[CACHE_ALIAS if CACHE_ALIAS in settings.CACHES else "default"]


@functools.lru_cache(maxsize=64)
def _parse_rate(rate: str) -> tuple[int, int] | None:
    if rate == "off":
        return None
    count, _, period = rate.partition("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


def client_ip(request: Request | HttpRequest) -> str:
    """The client's address (REMOTE_ADDR, or X-Forwarded-For behind THROTTLE_NUM_PROXIES).

    Validated as an IP address, so nothing a client writes in X-Forwarded-For reaches a key.
    """
    raw = request.META.get("REMOTE_ADDR", "")
    proxies = settings.THROTTLE_NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        raw = hops[-min(proxies, len(hops))]
    return _canonical_ip(raw)


@functools.lru_cache(maxsize=4096)
def _canonical_ip(raw: str) -> str:
    # Memoized: parsing an address costs more than the rest of the per-IP limit's work, and a
    # client sends the same one request after request (bounded: hostile values only evict).
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return "unknown"


def login_client_ip(request: HttpRequest) -> str | None:
    """django-axes' AXES_CLIENT_IP_CALLABLE: the admin login counts the same clients as the
    API's per-IP limit. None when there is no valid address (axes stores it in an inet column)."""
    ip = client_ip(request)
    return None if ip == "unknown" else ip


def _status_read_by_owner(request: Request, view: Any) -> str | None:
    """The user whose status entry this request reads, when it is the caller's own: the view
    names it (PlatformStatusViewSet.status_read_user_id), the token must be that user's."""
    named = getattr(view, "status_read_user_id", None)
    principal = request.user
    if named is None or not isinstance(principal, SupabasePrincipal) or not principal.user_id:
        return None
    try:
        user_id = strict_user_id(named())
    except InvalidUserId:
        return None
    return user_id if user_id == principal.user_id else None


def _same_redis_as_cache() -> bool:
    """Whether the throttle's counters live in the cache's own Redis (settings: the same
    configuration), so that one script may touch both."""
    if CACHE_ALIAS not in settings.CACHES:
        return True  # the throttle uses the default cache itself
    throttle, default = settings.CACHES[CACHE_ALIAS], settings.CACHES["default"]
    return throttle is default or (
        throttle.get("LOCATION") == default.get("LOCATION")
        and throttle.get("OPTIONS") == default.get("OPTIONS")
        and throttle.get("KEY_PREFIX") == default.get("KEY_PREFIX")
    )


def prefetched_status(request: Request | HttpRequest) -> cache.Prefetched | None:
    """The status entry the throttle's round trip read for this request, if it did."""
    found = request.META.get(PREFETCH_META)
    return found if isinstance(found, cache.Prefetched) else None


def buckets_for(request: Request, view: Any) -> list[Bucket]:
    principal = request.user
    if isinstance(principal, SupabasePrincipal) and principal.is_service_role:
        return []
    user_ident: str | None = None
    if isinstance(principal, SupabasePrincipal) and principal.user_id:
        user_ident = principal.user_id  # a canonical UUID (connectors.auth)
    elif principal is not None and getattr(principal, "is_authenticated", False):
        user_ident = f"django-{principal.pk}"  # a staff session on the admin endpoints
    ip = client_ip(request)
    wanted: list[tuple[str, str | None]] = [("user", user_ident), ("ip", ip)]
    if getattr(view, "action", None) in OAUTH_ACTIONS:
        wanted += [("oauth_user", user_ident), ("oauth_ip", ip)]
    buckets = []
    for scope, ident in wanted:
        parsed = _parse_rate(settings.THROTTLE_RATES[scope])
        if ident is not None and parsed is not None:
            buckets.append(Bucket(scope, ident, *parsed))
    return buckets


class _DrfBucket(SimpleRateThrottle):
    """DRF's own sliding-window throttle for one bucket (the non-Redis fallback)."""

    def __init__(self, bucket: Bucket) -> None:
        self.cache = _backend()
        self.bucket = bucket
        self.rate = f"{bucket.num_requests}/{bucket.duration}s"
        self.num_requests, self.duration = bucket.num_requests, bucket.duration

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.bucket.key


class ApiRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        # The status fast path (connectors/api/fastpath.py) counted this request already and
        # handed it to DRF: the same verdict, once, instead of counting it twice.
        decided = request.META.pop(VERDICT_META, None)
        if isinstance(decided, Verdict):
            self._wait = decided.wait
            return decided.allowed
        return self._count(request, view)

    def _count(self, request: Request, view: Any) -> bool:
        buckets = buckets_for(request, view)
        if not buckets:
            return True
        backend = _backend()
        if hasattr(backend, "client") and hasattr(backend.client, "get_client"):
            return self._allow_redis(request, view, backend, buckets)
        return self._allow_drf(request, view, buckets)

    def _allow_redis(
        self, request: Request, view: Any, backend: Any, buckets: list[Bucket]
    ) -> bool:
        user_id = _status_read_by_owner(request, view)
        if user_id is not None and _same_redis_as_cache():
            counters = [
                cache.Counter(backend.make_key(b.key), b.duration, b.num_requests) for b in buckets
            ]
            folded = cache.counted_read_platform_status(user_id, counters)
            if folded is not None:
                replies, prefetched = folded
                if prefetched is not None:
                    request.META[PREFETCH_META] = prefetched
                return replies is None or self._judge(backend, buckets, replies)
        try:
            client = cast(redis.Redis, backend.client.get_client(write=True))
            pipe = client.pipeline(transaction=False)
            for bucket in buckets:
                key = backend.make_key(bucket.key)
                pipe.incr(key)
                pipe.expire(key, bucket.duration, nx=True)
                pipe.pttl(key)
            # A command's own error (a counter that is not an integer, a key of another type)
            # comes back as a reply; only a connection failure or timeout raises.
            replies = pipe.execute(raise_on_error=False)
        except (redis.RedisError, RedisClusterException, OSError) as e:  # not a RedisError
            # Fail open: an unreachable Redis must not take the API down with it; the cache
            # layer already logs the outage.
            logger.debug("Throttle check skipped, Redis unavailable: %s", e.__class__.__name__)
            return True
        return self._judge(
            backend, buckets, [(replies[3 * i], replies[3 * i + 2]) for i in range(len(buckets))]
        )

    def _judge(self, backend: Any, buckets: list[Bucket], replies: list[tuple[Any, Any]]) -> bool:
        """The verdict from each counter's (count, PTTL in ms)."""
        waits = []
        broken = []
        for bucket, (count, ttl_ms) in zip(buckets, replies, strict=True):
            ttl = ttl_ms / 1000 if isinstance(ttl_ms, int) and ttl_ms > 0 else bucket.duration
            if not isinstance(count, int):
                # Planted or corrupted: this request is refused (a broken counter must never
                # turn a limit off), and the key is replaced by a fresh counter.
                broken.append(backend.make_key(bucket.key))
                waits.append(ttl)
            elif count > bucket.num_requests:
                waits.append(ttl)
        if broken:
            logger.warning("Throttle counter(s) not integers, reset: %d", len(broken))
            with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
                backend.client.get_client(write=True).delete(*broken)
        if waits:
            self._wait = max(waits)
            return False
        return True

    def _allow_drf(self, request: Request, view: Any, buckets: list[Bucket]) -> bool:
        waits = []
        for bucket in buckets:
            throttle = _DrfBucket(bucket)
            if not throttle.allow_request(request, view):
                waits.append(throttle.wait() or bucket.duration)
        if waits:
            self._wait = max(waits)
            return False
        return True

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None


def throttle_failed_authentication(request: Request, view: Any) -> float | None:
    """Count a request whose authentication failed; the wait if it is over a limit.

    DRF authenticates before it throttles, so such a request never reaches the view's
    throttles: the exception handler calls this instead. It has no user, so it counts towards
    the per-IP limits only (a token that failed verification names nobody we may trust).
    """
    waits = []
    for throttle in view.get_throttles() if view is not None else []:
        if not throttle.allow_request(request, view):
            waits.append(throttle.wait() or 1)
    return max(waits) if waits else None


def reset_local_counters() -> None:
    """Tests: forget per-process counters. Never touches Redis (whose clear() is a FLUSHDB);
    Redis counters live under CACHE_KEY_PREFIX and go with the other keys of a test run."""
    backend = _backend()
    if isinstance(backend, LocMemCache):
        backend.clear()
