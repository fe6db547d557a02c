"""Read-through with leases, XFetch and stale-if-error: the only way entries get filled.

A reader that misses takes a lease *before* it reads the database, and its fill lands only while
that lease survives, so a fill can never put back a row an invalidation has already removed
(Nishtala et al., NSDI 2013, 3.2.1). Concurrent misses wait for the filler instead of all
querying the database. XFetch (Vattani et al., VLDB 2015) refreshes hot entries early under the
same kind of lease. A hit is one GET. See docs/architecture.md ("The read path").
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError

from connectors import metrics
from connectors.cache import invalidation, outbox, recovery, scripts, store
from connectors.cache.entry import (
    MAX_ENTRY_BYTES,
    CachedRead,
    Counter,
    CounterReplies,
    Entry,
    Prefetched,
    decode,
    encode,
)
from connectors.cache.keys import Slot, job_slot, status_slot, ttl_seconds
from connectors.cache.stats import counters
from connectors.errors import CacheKeyUnreadable, CacheTimedOut, CacheUnavailable

logger = logging.getLogger("connectors.cache")

Loader = Callable[[], dict[str, Any]]


def counted_read_platform_status(
    user_id: object, counters: Sequence[Counter]
) -> tuple[CounterReplies, Prefetched | None] | None:
    """Count `counters` and read the user's entry in one round trip (the COUNTED_READ script).

    None when that cannot be one round trip (the cache would not be read, or a Cluster keeps
    the keys on different slots): the caller counts by itself, and the read does its own GET.
    The Prefetched is None when a limit was exceeded (nothing read).
    """
    slot = status_slot(user_id)
    key = store.full_key(slot.key)
    if not _usable(slot) or not store.foldable(key, [c.key for c in counters]):
        return None
    args: list[Any] = [MAX_ENTRY_BYTES]
    for counter in counters:
        args += [counter.window, counter.limit]
    try:
        reply = store.call(
            lambda r: scripts.COUNTED_READ(
                keys=[key, *(c.key for c in counters)], args=args, client=r
            ),
            key=key,
        )
    except CacheKeyUnreadable:
        return None  # the script itself failed (not the entry's type): count the usual way
    except CacheUnavailable as e:
        return None, Prefetched(key, error=e)
    replies = [(reply[i], reply[i + 1]) for i in range(2, len(reply), 2)]
    if reply[0] == 0:
        return replies, None
    if reply[0] == 2:
        return replies, Prefetched(key, error=CacheKeyUnreadable("not a string"))
    raw = reply[1]
    return replies, Prefetched(key, raw=(raw if isinstance(raw, bytes) else raw.encode()) or None)


def prefetched_hit(user_id: object, prefetched: Prefetched) -> CachedRead | Prefetched:
    """The hit `prefetched` is, when serving it takes nothing more (a valid entry, fresh, no
    early refresh drawn). Otherwise the Prefetched to hand to read_platform_status, carrying
    what was learned here, so that nothing is read, decoded, logged or drawn twice."""
    slot = status_slot(user_id)
    key = store.full_key(slot.key)
    if prefetched.key != key or prefetched.raw is None or prefetched.checked or not _usable(slot):
        return prefetched
    entry = _decode(prefetched.raw, slot, key)
    if entry is None or time.time() >= entry.expires_at:
        return replace(prefetched, checked=True, entry=entry)
    if _should_refresh_early(entry):
        return replace(prefetched, checked=True, entry=entry, refresh=True)
    recovery.remember_user(slot.ident)
    _log_hit(slot, None)
    return _hit(entry)


def read_platform_status(
    user_id: object, loader: Loader, *, prefetched: Prefetched | None = None
) -> CachedRead:
    """Serve the user's status from Redis, or load it with `loader` and cache it safely.

    `prefetched`: this request's counted_read_platform_status(), read moments ago: it stands
    for the GET (only for the key it read).
    """
    slot = status_slot(user_id)
    recovery.remember_user(slot.ident)
    return _read_through(slot, loader, prefetched)


def read_extraction_job(job_id: object, loader: Loader) -> CachedRead:
    return _read_through(job_slot(job_id), loader)


def ttl_ms(slot: Slot) -> int:
    # Redis keeps an entry past its TTL for the stale-if-error window only: a fresh read never
    # serves it without first trying the database.
    seconds = ttl_seconds(slot.kind) + settings.CACHE_STALE_IF_ERROR_SECONDS
    return max(1, int(seconds * 1000))


def read_bounded(r: redis.Redis, key: str) -> bytes | None:
    """GET, but never more than MAX_ENTRY_BYTES + 1 bytes (a longer value is then rejected)."""
    raw = r.getrange(key, 0, MAX_ENTRY_BYTES)
    if not raw:  # GETRANGE answers "" for a missing key
        return None
    return raw if isinstance(raw, bytes) else raw.encode()


def _decode(raw: bytes | str, slot: Slot, key: str) -> Entry | None:
    entry = decode(raw, slot, key)
    if entry is None:
        counters.record("rejected")
    return entry


def _usable(slot: Slot) -> bool:
    if not store.enabled():
        return False
    outbox.sweeper.ensure_running()
    return store.readable() and not invalidation.is_dirty(slot)


def _get(key: str, prefetched: Prefetched | None) -> bytes | None:
    if prefetched is None or prefetched.key != key:
        return _call_twice_if_slow(lambda r: read_bounded(r, key), key)
    if isinstance(prefetched.error, CacheTimedOut) and prefetched.error.isolated:
        # Asked again once, as any read that timed out: a plain GET, since the counted read
        # may have run (and counted) after all.
        return store.call(lambda r: read_bounded(r, key), key=key)
    if prefetched.error is not None:
        raise prefetched.error
    return prefetched.raw


def _read_through(slot: Slot, loader: Loader, prefetched: Prefetched | None = None) -> CachedRead:
    if not _usable(slot):
        metrics.record_cache_read("bypass")
        return CachedRead.from_data(loader())
    started = time.perf_counter()
    key = store.full_key(slot.key)
    try:
        raw = _get(key, prefetched)
    except CacheKeyUnreadable as e:
        # Not an entry (a key of another type planted there): a miss, and the key replaced.
        logger.warning("Discarding unreadable %s key: %s", slot.describe(), e)
        counters.record("rejected")
        _delete_quietly(key)
        return _miss(slot, key, loader, started)
    except CacheUnavailable as e:
        logger.debug("Reading %s from DB: %s", slot.describe(), e)
        return _load_after_redis_failed(slot, key, loader)
    if raw is not None:
        # Decoded and drawn already by prefetched_hit(), which declined to serve it:
        seen = prefetched if prefetched and prefetched.checked and prefetched.key == key else None
        entry = seen.entry if seen else _decode(raw, slot, key)
        if entry is not None:
            if time.time() >= entry.expires_at or (
                seen.refresh if seen else _should_refresh_early(entry)
            ):
                refreshed = _refresh(slot, key, loader, entry, raw)
                if refreshed is not None:
                    return refreshed
            _log_hit(slot, started)
            return _hit(entry)
        _delete_quietly(key)
    return _miss(slot, key, loader, started)


def _call_twice_if_slow[T](operation: Callable[[Any], T], key: str) -> T:
    """An isolated timeout is more likely this busy machine than a dead Redis: asking again
    costs one request timeout, sending the read to the database costs it a query just when it
    is busiest (a cold burst's waiters, a hot key under overload). Timeouts in a row look like
    a dead Redis (a probe decides, and opens the breaker): asking twice would only double what
    every request pays until then (make faults' SIGSTOP p99: +86 ms instead of +19)."""
    try:
        return store.call(operation, key=key)
    except CacheTimedOut as e:
        if not e.isolated:
            raise
        return store.call(operation, key=key)


def _log_hit(slot: Slot, started: float | None) -> None:
    if logger.isEnabledFor(logging.INFO):  # skip building the line when it is off
        if started is None:  # prefetched: the read was the throttle's round trip
            logger.info("Cache HIT: %s (prefetched)", slot.describe())
        else:
            logger.info(
                "Cache HIT: %s (%.1fms)", slot.describe(), (time.perf_counter() - started) * 1000
            )


def _hit(entry: Entry, *, stale: bool = False) -> CachedRead:
    """A read answered from Redis: counted, and served as the entry's own bytes."""
    counters.record("hits")
    metrics.record_cache_read("stale" if stale else "hit")
    return entry.served(stale=stale)


def _load_after_redis_failed(slot: Slot, key: str, loader: Loader) -> CachedRead:
    """The database, after one Redis call failed. If the database fails too, ask Redis once
    more before answering 503: one timed-out GET (a busy machine) does not open the breaker,
    and while Postgres is down a user with a cached entry must still be served. That second
    GET is as fresh as any hit: it reads what invalidation left."""
    try:
        result = CachedRead.from_data(loader())
    except DatabaseError:
        try:
            raw = store.call(lambda r: read_bounded(r, key), key=key)
        except CacheUnavailable:
            raw = None
        entry = _decode(raw, slot, key) if raw is not None else None
        if entry is None:
            raise
    else:
        metrics.record_cache_read("bypass")
        return result
    logger.warning(
        "Serving %s from Redis on a second try: the first failed and so did the database",
        slot.describe(),
    )
    return _hit(entry, stale=time.time() >= entry.expires_at)


def _miss(slot: Slot, key: str, loader: Loader, started: float) -> CachedRead:
    lease_key = store.full_key(slot.lease_key)
    token = secrets.token_hex(8)
    deadline = time.monotonic() + settings.CACHE_LEASE_WAIT_MS / 1000
    pause = 0.002
    unreadable = 0
    while True:
        try:
            reply = _call_twice_if_slow(
                lambda r: scripts.ACQUIRE(
                    keys=[key, lease_key],
                    args=[token, settings.CACHE_LEASE_MS, MAX_ENTRY_BYTES],
                    client=r,
                ),
                key,
            )
        except CacheKeyUnreadable as e:
            unreadable += 1
            if unreadable == 1:  # a key of another type: replace it, once
                _delete_quietly(key)
                continue
            logger.debug("Reading %s from DB: %s", slot.describe(), e)
            metrics.record_cache_read("bypass")
            return CachedRead.from_data(loader())
        except CacheUnavailable as e:
            logger.debug("Reading %s from DB: %s", slot.describe(), e)
            metrics.record_cache_read("bypass")
            return CachedRead.from_data(loader())
        if reply[0] == 1:
            entry = _decode(reply[1], slot, key)
            if entry is None:
                _delete_quietly(key)
                continue
            logger.info(
                "Cache HIT: %s (%.1fms, after waiting for the filler)",
                slot.describe(),
                (time.perf_counter() - started) * 1000,
            )
            return _hit(entry)
        if reply[0] == 2:
            return fill_holding_lease(slot, lease_key, token, loader)
        if time.monotonic() >= deadline:
            # The filler is slow or dead and its lease has not expired yet: answer from the DB
            # without caching rather than keep this request waiting longer.
            logger.warning("Lease wait for %s timed out; reading DB", slot.describe())
            counters.record("misses")
            metrics.record_cache_read("miss")
            metrics.record_lease_wait_timeout()
            return CachedRead.from_data(loader())
        if pause == 0.002:  # this read's first wait for another reader's fill
            metrics.record_lease_wait()
        time.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def fill_holding_lease(slot: Slot, lease_key: str, token: str, loader: Loader) -> CachedRead:
    """Load with `loader` and store the result, if the lease `token` still holds by then."""
    db_started = time.perf_counter()
    try:
        data = loader()
    except BaseException:
        # Let the next reader take over at once instead of waiting out the lease.
        with contextlib.suppress(CacheUnavailable):
            store.call(
                lambda r: scripts.RELEASE(keys=[lease_key], args=[token], client=r), key=lease_key
            )
        raise
    db_seconds = time.perf_counter() - db_started
    result = CachedRead.from_data(data)
    stored = store_with_lease(slot, result, lease_key, token, db_seconds)
    counters.record("misses")
    metrics.record_cache_read("miss")
    metrics.record_fill(stored=stored)
    logger.info(
        "Cache MISS: %s (%.1fms DB, %s)",
        slot.describe(),
        db_seconds * 1000,
        "cached for next request" if stored else "not cached: invalidated while loading",
    )
    return result


def store_with_lease(
    slot: Slot, result: CachedRead, lease_key: str, token: str, fill_seconds: float
) -> bool:
    """The FILL script: store `result` only while the lease `token` survives."""
    key = store.full_key(slot.key)
    payload = encode(slot, key, result.body, result.etag, fill_seconds)

    def fill(r: Any) -> bool:
        return bool(
            scripts.FILL(keys=[key, lease_key], args=[token, payload, ttl_ms(slot)], client=r)
        )

    try:
        try:
            return store.call(fill, key=key)
        except CacheTimedOut:
            # Even in a row: every reader waiting on this lease would otherwise wait it out
            # and query the database itself (a cold burst of 100 readers cost 100 queries on
            # a busy machine), and only a miss in flight pays the longer wait if Redis is
            # dead. Retrying is safe: FILL checks the lease token, so it cannot land after an
            # invalidation, and a first attempt that did land left no lease.
            return store.call_maintenance(fill, timeout=store.confirm_timeout())
    except CacheUnavailable as e:
        logger.warning("Could not cache %s: %s", slot.describe(), e)
        return False


def _should_refresh_early(entry: Entry) -> bool:
    beta = settings.CACHE_XFETCH_BETA
    if beta <= 0:
        return False
    # 1 - random() is in (0, 1], so the log is finite and <= 0.
    return time.time() - entry.delta * beta * math.log(1.0 - random.random()) >= entry.expires_at


def _refresh(
    slot: Slot, key: str, loader: Loader, entry: Entry, raw: bytes | str
) -> CachedRead | None:
    """Reload an entry that is expiring (XFetch) or expired. None: keep serving `entry`.

    Only the lease holder reloads; everyone else keeps getting the current entry meanwhile. If
    the database fails and the entry is past its TTL, it is served marked stale (RFC 5861
    stale-if-error) rather than failing the request.
    """
    lease_key = store.full_key(slot.lease_key)
    token = secrets.token_hex(8)
    try:
        granted = store.call(
            lambda r: scripts.REFRESH_LEASE(
                keys=[key, lease_key], args=[raw, token, settings.CACHE_LEASE_MS], client=r
            ),
            key=key,
        )
    except CacheUnavailable:
        return None
    if not granted:
        return None  # already refreshed or being refreshed: keep serving what we read
    logger.info("Refreshing %s before it expires", slot.describe())
    try:
        return fill_holding_lease(slot, lease_key, token, loader)
    except DatabaseError as e:
        if time.time() < entry.expires_at:
            return None
        logger.warning("Serving %s past its TTL, database unavailable: %s", slot.describe(), e)
        return _hit(entry, stale=True)


def _delete_quietly(key: str) -> None:
    with contextlib.suppress(CacheUnavailable):
        store.call(lambda r: r.delete(key), key=key)
