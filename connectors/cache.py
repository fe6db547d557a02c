"""The cache layer: the only module that knows cache keys, TTLs, leases and the stored format.

The platform-status entry follows cache-aside with three refinements, each closing a known hole:

* Leases (Nishtala et al., "Scaling Memcache at Facebook", NSDI 2013, section 3.2.1). A reader
  that misses takes a lease *before* it reads the database; invalidation deletes the value and
  the lease in one DEL; a fill lands only while the filler's lease is still there (one Lua
  script). So a reader that read the old row cannot SET it back after a writer's invalidation
  (the "stale set" that cacheops #22 and srtab/daiv PR #1219 shipped). Concurrent misses find
  the lease taken and wait for the filler's value instead of all querying the database.
* Invalidation after commit (`transaction.on_commit`, as cacheops' queue_when_in_transaction):
  a rolled-back write never evicts, and no reader can re-cache the pre-commit row. Until the
  commit, reads of a user written in the current transaction bypass the cache (zulip #24416).
* XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): entries carry their recompute time;
  hits refresh early with probability growing towards expiry, so a hot key's expiry does not
  stampede. The early refresher also takes the lease, so it cannot write a stale value either.

Every key of one user carries the `{user_id}` hash tag, so the multi-key DEL and the scripts
stay valid on Redis Cluster. Hits cost exactly one GET; invalidation is one DEL, no SCAN.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from redis.commands.core import Script

from connectors.errors import CacheUnavailable, DomainError, InvalidJobId, InvalidUserId

logger = logging.getLogger("connectors.cache")

# The contract's TTLs (seed document), in seconds.
TTL_SECONDS: dict[str, int] = {
    "platform_status": 300,
    "user_profile": 600,
    "soul_signature": 900,
    "extraction_job": 60,
    "platform_rate_limit": 3600,
}
SCHEMA_VERSION = 1
STATS_KEY = "cache_stats"

_REDIS_ERRORS = (redis.RedisError, OSError)


def ttl_seconds(name: str) -> float:
    return TTL_SECONDS[name] * settings.CACHE_TTL_SCALE


# --- Keys -----------------------------------------------------------------------------------
_UUID_EXAMPLE = "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a"


def _canonical_uuid(value: object, error: type[DomainError], name: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    # The length check runs first so that no oversized or odd input reaches the parser.
    if isinstance(value, str) and len(value) == 36 and value.isascii():
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise error(f"{name} must be a UUID such as {_UUID_EXAMPLE}.")


def normalize_user_id(user_id: object) -> str:
    """The canonical form of a user id, or InvalidUserId: nothing else ever reaches a key."""
    return _canonical_uuid(user_id, InvalidUserId, "user_id")


def normalize_job_id(job_id: object) -> str:
    return _canonical_uuid(job_id, InvalidJobId, "job_id")


def platform_status_key(user_id: object) -> str:
    return _status_slot(user_id).key


def user_profile_key(user_id: object) -> str:
    return f"user_profile:{{{normalize_user_id(user_id)}}}"


def soul_signature_key(user_id: object) -> str:
    return f"soul_signature:{{{normalize_user_id(user_id)}}}"


def extraction_job_key(job_id: object) -> str:
    return _job_slot(job_id).key


def platform_rate_limit_key(user_id: object, provider: str) -> str:
    from connectors.providers import get_provider

    return f"platform_rate_limit:{{{normalize_user_id(user_id)}}}:{get_provider(provider).name}"


# --- Backend access -------------------------------------------------------------------------
def _backend() -> Any:
    return caches["default"]


def enabled() -> bool:
    from django_redis.cache import RedisCache

    return isinstance(_backend(), RedisCache)


def backend_name() -> str:
    return type(_backend()).__name__


def _redis() -> redis.Redis:
    return cast(redis.Redis, _backend().client.get_client(write=True))


def _full_key(key: str) -> str:
    return str(_backend().make_key(key))


# --- Generic get / set / delete (JSON values, contract TTLs) --------------------------------
def get(key: str) -> Any:
    return _backend().get(key)


def set(key: str, value: Any, ttl: float) -> None:
    _backend().set(key, value, timeout=ttl)


def delete(key: str) -> None:
    _backend().delete(key)


# --- Stats ----------------------------------------------------------------------------------
class _Stats:
    """Hit/miss counters shared across processes without costing a hit a second round trip.

    Each process counts in memory and a daemon thread adds its counts to one Redis hash every
    second (statsd-style). The figures are therefore up to a second behind, deliberately.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = {"hits": 0, "misses": 0}
        self._pid = 0

    def record(self, field: str) -> None:
        with self._lock:
            self._pending[field] += 1
            if self._pid != os.getpid():
                # First use in this process (gunicorn forks after import): start its flusher.
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="cache-stats", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {"hits": 0, "misses": 0}
        if not any(pending.values()) or not enabled():
            return
        try:
            pipe = _redis().pipeline(transaction=False)
            for field, count in pending.items():
                if count:
                    pipe.hincrby(_full_key(STATS_KEY), field, count)
            pipe.execute()
        except _REDIS_ERRORS:
            with self._lock:
                for field, count in pending.items():
                    self._pending[field] += count


stats = _Stats()


def cache_stats() -> dict[str, Any]:
    stats.flush()
    result: dict[str, Any] = {"backend": backend_name(), "enabled": enabled()}
    if not enabled():
        with stats._lock:
            hits, misses = stats._pending["hits"], stats._pending["misses"]
        result.update(hits=hits, misses=misses, keys=0, redis_memory=None)
    else:
        try:
            r = _redis()
            counts = r.hgetall(_full_key(STATS_KEY))
            hits = int(counts.get(b"hits", 0))
            misses = int(counts.get(b"misses", 0))
            keys = sum(1 for _ in r.scan_iter(match=_prefix_pattern(), count=1000))
            memory = r.info("memory")
        except _REDIS_ERRORS as e:
            raise CacheUnavailable(f"Redis is unavailable: {e}") from e
        result.update(
            hits=hits,
            misses=misses,
            keys=keys,
            redis_memory={
                "used_memory": memory.get("used_memory"),
                "used_memory_human": memory.get("used_memory_human"),
                "maxmemory": memory.get("maxmemory"),
            },
        )
    total = result["hits"] + result["misses"]
    result["hit_ratio"] = round(result["hits"] / total, 4) if total else None
    result["key_prefix"] = settings.CACHE_KEY_PREFIX
    return result


def _prefix_pattern() -> str:
    # make_key("*") gives "<prefix>:<version>:*": exactly this deployment's keys.
    return _full_key("*")


# --- Read-through entries: stored format -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Slot:
    """One cached object: its kind names the contract key and TTL; ident is a validated UUID."""

    kind: str
    ident: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{{{self.ident}}}"

    @property
    def lease_key(self) -> str:
        return f"{self.key}:lease"

    @property
    def label(self) -> str:
        return "job" if self.kind == "extraction_job" else "user"

    def describe(self) -> str:
        return f"{self.kind} for {self.label} {self.ident}"


def _status_slot(user_id: object) -> _Slot:
    return _Slot("platform_status", normalize_user_id(user_id))


def _job_slot(job_id: object) -> _Slot:
    return _Slot("extraction_job", normalize_job_id(job_id))


@dataclass(frozen=True, slots=True)
class CachedRead:
    data: dict[str, Any]
    cached: bool
    etag: str


def etag_for(data: dict[str, Any]) -> str:
    # Status data carries every row's DB-assigned version, so any committed write changes it.
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


def _encode_entry(slot: _Slot, data: dict[str, Any], etag: str, fill_seconds: float) -> bytes:
    entry = {
        "s": SCHEMA_VERSION,
        "k": slot.ident,
        "etag": etag,
        "delta": round(fill_seconds, 6),
        "exp": round(time.time() + ttl_seconds(slot.kind), 3),
        "data": data,
    }
    return json.dumps(entry, separators=(",", ":")).encode()


def _ttl_ms(slot: _Slot) -> int:
    return max(1, int(ttl_seconds(slot.kind) * 1000))


@dataclass(frozen=True, slots=True)
class _Entry:
    data: dict[str, Any]
    etag: str
    delta: float
    expires_at: float


def _decode_entry(raw: bytes | str, slot: _Slot) -> _Entry | None:
    """A stored entry, or None if it is not one we wrote (planted, truncated, old schema)."""
    try:
        entry = json.loads(raw)
        if entry["s"] != SCHEMA_VERSION or entry["k"] != slot.ident:
            raise ValueError("schema or owner mismatch")
        if not isinstance(entry["data"], dict):
            raise ValueError("data is not an object")
        return _Entry(entry["data"], str(entry["etag"]), float(entry["delta"]), float(entry["exp"]))
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("Discarding unreadable %s entry (%s)", slot.describe(), e)
        return None


# Returns {1, value} when the value is there, {2} when this caller now holds the lease,
# {0} when another caller holds it.
_ACQUIRE = Script(
    None,  # type: ignore[arg-type]
    b"""
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
""",
)
# The fill lands only while the caller's lease survives: an invalidation since the caller's
# miss deleted it, and then the (possibly stale) value is dropped.
_FILL = Script(
    None,  # type: ignore[arg-type]
    b"""
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
""",
)
_RELEASE = Script(
    None,  # type: ignore[arg-type]
    b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
)


def _naive() -> bool:
    return bool(settings.CACHE_MODE == "naive")


# --- Read-through -----------------------------------------------------------------------------
Loader = Callable[[], dict[str, Any]]


def read_platform_status(user_id: object, loader: Loader) -> CachedRead:
    """Serve the user's status from Redis, or load it with `loader` and cache it safely."""
    return _read_through(_status_slot(user_id), loader)


def read_extraction_job(job_id: object, loader: Loader) -> CachedRead:
    return _read_through(_job_slot(job_id), loader)


def _read_through(slot: _Slot, loader: Loader) -> CachedRead:
    if not enabled() or _is_dirty_key(slot.key):
        return _load_uncached(loader)
    started = time.perf_counter()
    try:
        r = _redis()
        key = _full_key(slot.key)
        raw = r.get(key)
    except _REDIS_ERRORS as e:
        logger.warning("Cache unavailable, reading %s from DB: %s", slot.describe(), e)
        return _load_uncached(loader)
    entry = _decode_entry(raw, slot) if raw is not None else None
    if entry is not None:
        if _should_refresh_early(entry):
            refreshed = _refresh_early(r, slot, key, loader)
            if refreshed is not None:
                return refreshed
        stats.record("hits")
        logger.info(
            "Cache HIT: %s (%.1fms)", slot.describe(), (time.perf_counter() - started) * 1000
        )
        return CachedRead(entry.data, cached=True, etag=entry.etag)
    if raw is not None:
        _delete_quietly(r, key)
    if _naive():
        return _naive_miss(r, slot, key, loader)
    return _miss(r, slot, key, loader, started)


def _load_uncached(loader: Loader) -> CachedRead:
    data = loader()
    return CachedRead(data, cached=False, etag=etag_for(data))


def _miss(r: redis.Redis, slot: _Slot, key: str, loader: Loader, started: float) -> CachedRead:
    lease_key = _full_key(slot.lease_key)
    token = secrets.token_hex(8)
    deadline = time.monotonic() + settings.CACHE_LEASE_WAIT_MS / 1000
    pause = 0.002
    while True:
        try:
            reply = _ACQUIRE(keys=[key, lease_key], args=[token, settings.CACHE_LEASE_MS], client=r)
        except _REDIS_ERRORS as e:
            logger.warning("Cache unavailable, reading %s from DB: %s", slot.describe(), e)
            return _load_uncached(loader)
        if reply[0] == 1:
            entry = _decode_entry(reply[1], slot)
            if entry is None:
                _delete_quietly(r, key)
                continue
            stats.record("hits")
            logger.info(
                "Cache HIT: %s (%.1fms, after waiting for the filler)",
                slot.describe(),
                (time.perf_counter() - started) * 1000,
            )
            return CachedRead(entry.data, cached=True, etag=entry.etag)
        if reply[0] == 2:
            return _fill_holding_lease(r, slot, key, lease_key, token, loader)
        if time.monotonic() >= deadline:
            # The filler is slow or dead and its lease has not expired yet: answer from the DB
            # without caching rather than keep this request waiting longer.
            logger.warning("Lease wait for %s timed out; reading DB", slot.describe())
            stats.record("misses")
            return _load_uncached(loader)
        time.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def _fill_holding_lease(
    r: redis.Redis, slot: _Slot, key: str, lease_key: str, token: str, loader: Loader
) -> CachedRead:
    db_started = time.perf_counter()
    try:
        data = loader()
    except BaseException:
        # Let the next reader take over at once instead of waiting out the lease.
        with contextlib.suppress(*_REDIS_ERRORS):
            _RELEASE(keys=[lease_key], args=[token], client=r)
        raise
    db_seconds = time.perf_counter() - db_started
    etag = etag_for(data)
    try:
        stored = _FILL(
            keys=[key, lease_key],
            args=[token, _encode_entry(slot, data, etag, db_seconds), _ttl_ms(slot)],
            client=r,
        )
    except _REDIS_ERRORS as e:
        logger.warning("Could not cache %s: %s", slot.describe(), e)
        stored = 0
    stats.record("misses")
    if stored:
        logger.info(
            "Cache MISS: %s (%.1fms DB, cached for next request)",
            slot.describe(),
            db_seconds * 1000,
        )
    else:
        logger.info(
            "Cache MISS: %s (%.1fms DB, not cached: invalidated while loading)",
            slot.describe(),
            db_seconds * 1000,
        )
    return CachedRead(data, cached=False, etag=etag)


def _should_refresh_early(entry: _Entry) -> bool:
    beta = settings.CACHE_XFETCH_BETA
    if beta <= 0 or _naive():
        return False
    # 1 - random() is in (0, 1], so the log is finite and <= 0.
    return time.time() - entry.delta * beta * math.log(1.0 - random.random()) >= entry.expires_at


def _refresh_early(r: redis.Redis, slot: _Slot, key: str, loader: Loader) -> CachedRead | None:
    lease_key = _full_key(slot.lease_key)
    token = secrets.token_hex(8)
    try:
        if not r.set(lease_key, token, nx=True, px=settings.CACHE_LEASE_MS):
            return None  # someone else is refreshing; keep serving the current value
    except _REDIS_ERRORS:
        return None
    logger.info("Refreshing %s early (XFetch)", slot.describe())
    return _fill_holding_lease(r, slot, key, lease_key, token, loader)


def _naive_miss(r: redis.Redis, slot: _Slot, key: str, loader: Loader) -> CachedRead:
    """The textbook version the consistency checker must catch: read the DB, then plain SET."""
    db_started = time.perf_counter()
    data = loader()
    etag = etag_for(data)
    with contextlib.suppress(*_REDIS_ERRORS):
        r.set(
            key, _encode_entry(slot, data, etag, time.perf_counter() - db_started), px=_ttl_ms(slot)
        )
    stats.record("misses")
    return CachedRead(data, cached=False, etag=etag)


def _delete_quietly(r: redis.Redis, key: str) -> None:
    with contextlib.suppress(*_REDIS_ERRORS):
        r.delete(key)


# --- The contract's helpers -----------------------------------------------------------------
def get_cached_platform_status(user_id: object) -> dict[str, Any] | None:
    """The cached status, or None (also when caching is off or Redis is down)."""
    slot = _status_slot(user_id)
    if not enabled():
        return None
    try:
        raw = _redis().get(_full_key(slot.key))
    except _REDIS_ERRORS:
        return None
    entry = _decode_entry(raw, slot) if raw is not None else None
    return entry.data if entry else None


def acquire_platform_status_lease(user_id: object) -> str | None:
    """A lease to fill this user's entry; take it *before* reading the database."""
    slot = _status_slot(user_id)
    if not enabled():
        return None
    token = secrets.token_hex(8)
    try:
        taken = _redis().set(_full_key(slot.lease_key), token, nx=True, px=settings.CACHE_LEASE_MS)
    except _REDIS_ERRORS:
        return None
    return token if taken else None


def set_cached_platform_status(
    user_id: object, status: dict[str, Any], *, lease: str, fill_seconds: float = 0.0
) -> bool:
    """Store `status` if `lease` is still valid; False if an invalidation came first."""
    slot = _status_slot(user_id)
    if not enabled():
        return False
    try:
        return bool(
            _FILL(
                keys=[_full_key(slot.key), _full_key(slot.lease_key)],
                args=[
                    lease,
                    _encode_entry(slot, status, etag_for(status), fill_seconds),
                    _ttl_ms(slot),
                ],
                client=_redis(),
            )
        )
    except _REDIS_ERRORS:
        return False


def invalidate_platform_status_cache(user_id: object) -> bool:
    """Drop the user's entry and any outstanding lease now. False if Redis could not be told."""
    return _invalidate(_status_slot(user_id))


def invalidate_extraction_job_cache(job_id: object) -> bool:
    return _invalidate(_job_slot(job_id))


def _invalidate(slot: _Slot) -> bool:
    if not enabled():
        return True
    started = time.perf_counter()
    try:
        # One DEL for both keys (same hash slot): a filler holding the old lease can no longer
        # store what it read before this point.
        _redis().delete(_full_key(slot.key), _full_key(slot.lease_key))
    except _REDIS_ERRORS as e:
        logger.error("Could not invalidate %s: %s", slot.describe(), e)
        return False
    logger.info(
        "Invalidated %s cache for %s %s (%.1fms)",
        slot.kind,
        slot.label,
        slot.ident,
        (time.perf_counter() - started) * 1000,
    )
    return True


# --- Invalidation scheduling and dirty reads ------------------------------------------------
_DIRTY_ATTR = "_connectors_dirty_keys"


def _dirty_keys(conn: BaseDatabaseWrapper) -> builtins.set[str]:
    # `set` is this module's contract function; the builtin is spelled out.
    dirty: builtins.set[str] | None = getattr(conn, _DIRTY_ATTR, None)
    if dirty is None:
        dirty = builtins.set()
        setattr(conn, _DIRTY_ATTR, dirty)
    return dirty


def invalidate_platform_status_on_commit(user_id: object, *, using: str | None = None) -> None:
    """Invalidate once the current transaction commits (at once in autocommit)."""
    _invalidate_on_commit(_status_slot(user_id), using)


def invalidate_extraction_job_on_commit(job_id: object, *, using: str | None = None) -> None:
    _invalidate_on_commit(_job_slot(job_id), using)


def _invalidate_on_commit(slot: _Slot, using: str | None) -> None:
    if _naive():
        # Inside the transaction: a concurrent reader re-caches the pre-commit row.
        _invalidate(slot)
        return
    conn = transaction.get_connection(using)
    if conn.in_atomic_block:
        _dirty_keys(conn).add(slot.key)
    transaction.on_commit(lambda: _invalidate_after_commit(slot, conn), using=using, robust=True)


def _invalidate_after_commit(slot: _Slot, conn: BaseDatabaseWrapper) -> None:
    _invalidate(slot)
    if not conn.in_atomic_block:
        _dirty_keys(conn).discard(slot.key)


def _is_dirty_key(key: str, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    if _naive():
        return False
    conn = transaction.get_connection(using)
    dirty = _dirty_keys(conn)
    if not conn.in_atomic_block:
        # Left over from a rolled-back transaction: nothing is pending any more.
        dirty.clear()
        return False
    return key in dirty


def is_dirty(user_id: object, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True while the current transaction has written this user and not yet committed."""
    return _is_dirty_key(_status_slot(user_id).key, using=using)


# --- Whole-deployment operations (never on a request path) ----------------------------------
def clear_user(user_id: object) -> int:
    """Delete every key of one user (status, lease, profile, signature, rate limits)."""
    from connectors.providers import PROVIDERS

    uid = normalize_user_id(user_id)
    if not enabled():
        return 0
    status = _status_slot(uid)
    keys = [status.key, status.lease_key, user_profile_key(uid), soul_signature_key(uid)] + [
        platform_rate_limit_key(uid, p) for p in PROVIDERS
    ]
    try:
        return int(_redis().delete(*[_full_key(k) for k in keys]))
    except _REDIS_ERRORS as e:
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e


def clear_all(*, batch: int = 500) -> int:
    """Delete this deployment's keys only: SCAN by prefix, never FLUSHDB / FLUSHALL."""
    if not enabled():
        return 0
    deleted = 0
    try:
        r = _redis()
        chunk: list[bytes] = []
        for key in r.scan_iter(match=_prefix_pattern(), count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += int(r.unlink(*chunk))
                chunk.clear()
        if chunk:
            deleted += int(r.unlink(*chunk))
    except _REDIS_ERRORS as e:
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e
    return deleted


def invalidate_all_platform_status(*, batch: int = 500) -> int:
    """Delete every platform_status entry and lease of this deployment; the number deleted.

    The NOTIFY listener's epoch bump (connectors/listener.py): notifications sent while it was
    disconnected are lost, so after every (re)connect it drops every status entry, and the
    leases with them so that no filler that read the database before can still store. Unlike
    clear_all() it leaves rate limits, profiles and stats alone. SCAN, never KEYS: not a
    request path, but it must not block Redis either.
    """
    if not enabled():
        return 0
    # Glob metacharacters in the deployment prefix must match literally.
    literal = "".join(f"\\{c}" if c in "\\*?[]" else c for c in _full_key("platform_status:"))
    deleted = 0
    try:
        r = _redis()
        chunk: list[bytes] = []
        for key in r.scan_iter(match=literal + "*", count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += int(r.delete(*chunk))
                chunk.clear()
        if chunk:
            deleted += int(r.delete(*chunk))
    except _REDIS_ERRORS as e:
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e
    return deleted
