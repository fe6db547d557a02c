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
import collections
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django_redis.exceptions import ConnectionInterrupted
from redis.commands.core import Script

from connectors import metrics
from connectors.background import PerProcessThread
from connectors.breaker import CircuitBreaker, Permit, State
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
SCHEMA_VERSION = 2
STATS_KEY = "cache_stats"
# Present while Redis holds this deployment's data; gone after a restart that lost it.
SENTINEL_KEY = "cache_populated"

_REDIS_ERRORS = (redis.RedisError, OSError, ConnectionInterrupted)


def ttl_seconds(name: str) -> float:
    return TTL_SECONDS[name] * settings.CACHE_TTL_SCALE


# --- Keys -----------------------------------------------------------------------------------
_UUID_EXAMPLE = "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a"


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_uuid(value: object, error: type[DomainError], name: str) -> str:
    # Only the 8-4-4-4-12 hex form, in either case. uuid.UUID() alone is too lenient: it
    # accepts braces, "urn:uuid:", surrounding spaces and non-ASCII digits, and maps some of
    # them to a *different* valid id.
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value):
            return value  # the common case, checked on every request
        lowered = value.lower()
        if value.isascii() and _CANONICAL_UUID.fullmatch(lowered):
            return lowered
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


def _replay_before_close() -> bool:
    from connectors import outbox

    global _lost_data  # handed from the probe to its recovery hooks, in the same thread
    try:
        if not outbox.replay():
            return False
    except DatabaseError as e:
        logger.warning("Cannot replay pending invalidations, database unavailable: %s", e)
        return False
    # Did Redis come back without its data (a restart without persistence)? The sentinel is
    # missing then. Checked before the breaker closes, while nothing else writes to Redis; the
    # one process whose SET NX recreates it re-warms the most active users for everyone.
    try:
        _lost_data = bool(
            _call(lambda r: r.set(_full_key(SENTINEL_KEY), b"1", nx=True), bypass_breaker=True)
        )
    except CacheUnavailable:
        return False
    return True


breaker = CircuitBreaker(
    "redis",
    failure_threshold=max(1, settings.CACHE_BREAKER_THRESHOLD),
    cooldown=settings.CACHE_BREAKER_COOLDOWN_SECONDS,
    before_close=_replay_before_close,
)

# Set by the outbox sweeper when invalidations are known to be undelivered and cannot be
# delivered now: Redis may then hold stale entries even though this process saw no failure.
_undelivered = threading.Event()


def set_undelivered(undelivered: bool) -> None:
    if undelivered and not _undelivered.is_set():
        logger.warning(
            "Undelivered invalidations pending: reading from the database until they are replayed"
        )
        _undelivered.set()
    elif not undelivered and _undelivered.is_set():
        logger.info("Pending invalidations replayed: reading from Redis again")
        _undelivered.clear()


def _breaker_on() -> bool:
    return bool(settings.CACHE_BREAKER_THRESHOLD > 0)


def _call[T](
    operation: Callable[[redis.Redis], T], *, bypass_breaker: bool = False, force: bool = False
) -> T:
    """Run one Redis operation through the circuit breaker; CacheUnavailable if it cannot.

    `force`: try even while the breaker is open (without counting the outcome). Invalidations
    use it: other processes may already be using a Redis this one still skips, and a skipped
    DEL would leave their leases alive, so a fill of the pre-write row could land.
    """
    guarded = _breaker_on() and not bypass_breaker
    if guarded:
        permit = breaker.allow()
        if permit is Permit.PROBE:
            threading.Thread(target=_probe, name="redis-probe", daemon=True).start()
        if permit is not Permit.ALLOW:
            if not force:
                raise CacheUnavailable("Redis skipped: circuit breaker open")
            guarded = False
    try:
        result = operation(_redis())
    except _REDIS_ERRORS as e:
        metrics.record_redis_error()
        if guarded:
            breaker.record_failure(e)
        raise CacheUnavailable(f"Redis is unavailable: {e}") from e
    if guarded:
        breaker.record_success()
    return result


def _probe() -> None:
    """Test a recovering Redis off the request path: PING, replay what it missed (the
    breaker's before_close), and only then let requests use it again. Then re-warm the users
    this process served last, so that a Redis that came back empty is useful again at once."""
    from django.db import connection

    try:
        try:
            _redis().ping()
        except _REDIS_ERRORS as e:
            metrics.record_redis_error()
            breaker.record_failure(e)
            return
        breaker.record_success()
        if breaker.state is State.CLOSED:
            _run_recovery_hooks()
    finally:
        connection.close()  # the replay and the warm-up used this thread's own connection


# The distinct users this process served lately, least recent first: after an outage they
# are read through again (hits cost one GET each). An OrderedDict used as an LRU; concurrent
# threads may race on it, which can only misplace a user in the order, never break a read.
_recent_users: collections.OrderedDict[str, None] = collections.OrderedDict()


def _remember_user(uid: str) -> None:
    limit = settings.CACHE_WARM_ON_RECOVERY
    if limit <= 0:
        return
    _recent_users[uid] = None
    _recent_users.move_to_end(uid)
    while len(_recent_users) > limit:
        try:
            _recent_users.popitem(last=False)
        except KeyError:  # another thread emptied it meanwhile
            break


RecoveryHook = Callable[[list[str], bool], None]
_recovery_hooks: list[RecoveryHook] = []
_lost_data = False


def on_recovery(hook: RecoveryHook) -> RecoveryHook:
    """Register `hook(recent_user_ids, lost_data)`, called once Redis is back: with the users
    this process served last, and whether Redis came back empty (true in one process only)."""
    _recovery_hooks.append(hook)
    return hook


def _run_recovery_hooks() -> None:
    if settings.CACHE_WARM_ON_RECOVERY <= 0:
        return
    try:
        users = list(reversed(_recent_users))  # newest first
    except RuntimeError:  # resized by a request thread mid-copy: this copy will do
        users = list(_recent_users.copy())[::-1]
    started = time.perf_counter()
    for hook in _recovery_hooks:
        try:
            hook(users, _lost_data)
        except Exception:  # a failed warm-up only costs hit ratio, never correctness
            logger.exception("Re-warming the cache after recovery failed")
            return
    logger.info(
        "Re-warmed %d recently served user(s) in %.1fs after recovery",
        len(users),
        time.perf_counter() - started,
    )


def _usable() -> bool:
    """Whether reads may use Redis at all right now (in-memory checks only: every read pays)."""
    if not enabled() or _undelivered.is_set():
        return False
    from connectors import outbox

    outbox.sweeper.ensure_running()
    return not _breaker_on() or not breaker.is_open()


# --- Generic get / set / delete (JSON values, contract TTLs) --------------------------------
# Through django-redis' client (not RedisCache, whose IGNORE_EXCEPTIONS would hide failures
# from the breaker), so these degrade exactly like the status path: quietly, and fast.
def get(key: str, default: Any = None) -> Any:
    if not enabled():
        return default
    try:
        return _call(lambda r: _backend().client.get(key, default=default, client=r))
    except CacheUnavailable:
        return default


def set(key: str, value: Any, ttl: float) -> None:
    if enabled():
        with contextlib.suppress(CacheUnavailable):
            _call(lambda r: _backend().client.set(key, value, timeout=ttl, client=r))


def delete(key: str) -> None:
    if enabled():
        with contextlib.suppress(CacheUnavailable):
            _call(lambda r: _backend().client.delete(key, client=r))


# --- Stats ----------------------------------------------------------------------------------
class _Stats:
    """Hit/miss counters shared across processes without costing a hit a second round trip.

    Each process counts in memory and a daemon thread adds its counts to one Redis hash every
    second (statsd-style). The figures are therefore up to a second behind, deliberately.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = {"hits": 0, "misses": 0}
        self._flusher = PerProcessThread("cache-stats", self._run)

    def record(self, field: str) -> None:
        with self._lock:
            self._pending[field] += 1
        self._flusher.ensure_started()

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {"hits": 0, "misses": 0}
        if not any(pending.values()) or not enabled():
            return

        def increment(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for field, count in pending.items():
                if count:
                    pipe.hincrby(_full_key(STATS_KEY), field, count)
            # Traffic means Redis holds data now: (re)mark it, in the same round trip.
            pipe.set(_full_key(SENTINEL_KEY), b"1")
            pipe.execute()

        try:
            # A background thread must not steer the breaker (nor become its probe): it keeps
            # its counts while Redis is being skipped, and its failures are not the requests'.
            if _breaker_on() and breaker.state is not State.CLOSED:
                raise CacheUnavailable("breaker not closed")
            _call(increment, bypass_breaker=True)
        except CacheUnavailable:
            with self._lock:
                for field, count in pending.items():
                    self._pending[field] += count


stats = _Stats()


def cache_stats() -> dict[str, Any]:
    stats.flush()
    result: dict[str, Any] = {
        "backend": backend_name(),
        "enabled": enabled(),
        "breaker": breaker.state.value if enabled() and _breaker_on() else None,
        "undelivered_invalidations": _undelivered.is_set(),
    }
    if not enabled():
        with stats._lock:
            hits, misses = stats._pending["hits"], stats._pending["misses"]
        result.update(hits=hits, misses=misses, keys=0, redis_memory=None)
    else:

        def collect(r: redis.Redis) -> tuple[dict[Any, Any], int, dict[str, Any]]:
            counts = r.hgetall(_full_key(STATS_KEY))
            keys = sum(1 for _ in r.scan_iter(match=_prefix_pattern(), count=1000))
            return counts, keys, r.info("memory")

        counts, keys, memory = _call(collect)
        result.update(
            hits=int(counts.get(b"hits", 0)),
            misses=int(counts.get(b"misses", 0)),
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


class CachedRead:
    """What a read-through returns: the document as JSON bytes, ready to be sent as they are.

    A hit never decodes the document: `body` goes straight into the response. `data` decodes
    it on demand, for callers that need to look inside.
    """

    __slots__ = ("_data", "body", "cached", "etag", "stale")

    def __init__(
        self,
        body: bytes,
        *,
        cached: bool,
        etag: str,
        stale: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.cached = cached
        self.etag = etag
        # Served past its TTL because the database could not be asked (RFC 5861 stale-if-error).
        self.stale = stale
        self._data = data

    @classmethod
    def from_data(cls, data: dict[str, Any], *, cached: bool = False) -> CachedRead:
        body = _dumps(data)
        return cls(body, cached=cached, etag=_etag(body), data=data)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.body)
        return self._data


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _etag(body: bytes) -> str:
    # The document carries every row's DB-assigned version, so any committed write changes it.
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def _encode_entry(slot: _Slot, body: bytes, etag: str, fill_seconds: float) -> bytes:
    """A one-line JSON header, a newline, then the document's JSON bytes.

    Compact JSON never contains a raw newline, so the first one ends the header. Keeping the
    document as bytes lets a hit send it without decoding and re-encoding it.
    """
    header = {
        "s": SCHEMA_VERSION,
        "k": slot.ident,
        "etag": etag,
        "n": len(body),
        "delta": round(fill_seconds, 6),
        "exp": round(time.time() + ttl_seconds(slot.kind), 3),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def _ttl_ms(slot: _Slot) -> int:
    # Redis keeps an entry past its TTL for the stale-if-error window only: a fresh read never
    # serves it without first trying the database (see _read_through).
    seconds = ttl_seconds(slot.kind) + settings.CACHE_STALE_IF_ERROR_SECONDS
    return max(1, int(seconds * 1000))


@dataclass(frozen=True, slots=True)
class _Entry:
    body: bytes
    etag: str
    delta: float
    expires_at: float


def _decode_entry(raw: bytes | str, slot: _Slot) -> _Entry | None:
    """A stored entry, or None if it is not one we wrote (planted, truncated, old schema).

    The ETag is the SHA-256 of the document, so checking it (about 2 us for a status document)
    also catches a document cut short or altered.
    """
    try:
        if isinstance(raw, str):
            raw = raw.encode()
        header_bytes, separator, body = raw.partition(b"\n")
        header = json.loads(header_bytes)
        if not separator or header["s"] != SCHEMA_VERSION or header["k"] != slot.ident:
            raise ValueError("schema or owner mismatch")
        if header["n"] != len(body) or header["etag"] != _etag(body):
            raise ValueError("document does not match its header")
        return _Entry(body, header["etag"], float(header["delta"]), float(header["exp"]))
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
# The lease for an early (XFetch) or expired-entry refresh, granted only while the stored entry
# is still the one the caller read. Without that check a second reader that read the old entry
# could take the lease right after the first refresher's fill released it, and refill again.
_REFRESH_LEASE = Script(
    None,  # type: ignore[arg-type]
    b"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
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
    slot = _status_slot(user_id)
    _remember_user(slot.ident)
    return _read_through(slot, loader)


def read_extraction_job(job_id: object, loader: Loader) -> CachedRead:
    return _read_through(_job_slot(job_id), loader)


def _read_through(slot: _Slot, loader: Loader) -> CachedRead:
    if not _usable() or _is_dirty_key(slot.key):
        metrics.record_cache_read("bypass")
        return _load_uncached(loader)
    started = time.perf_counter()
    key = _full_key(slot.key)
    try:
        raw = _call(lambda r: r.get(key))
    except CacheUnavailable as e:
        logger.debug("Reading %s from DB: %s", slot.describe(), e)
        return _load_after_redis_failed(slot, key, loader)
    if raw is not None:
        entry = _decode_entry(raw, slot)
        if entry is not None:
            if time.time() >= entry.expires_at or _should_refresh_early(entry):
                refreshed = _refresh(slot, key, loader, entry, raw)
                if refreshed is not None:
                    return refreshed
            if logger.isEnabledFor(logging.INFO):  # skip building the line when it is off
                logger.info(
                    "Cache HIT: %s (%.1fms)",
                    slot.describe(),
                    (time.perf_counter() - started) * 1000,
                )
            return _hit(entry)
        _delete_quietly(key)
    if _naive():
        return _naive_miss(slot, key, loader)
    return _miss(slot, key, loader, started)


def _hit(entry: _Entry, *, stale: bool = False) -> CachedRead:
    """A read answered from Redis: counted, and served as the entry's own bytes."""
    stats.record("hits")
    metrics.record_cache_read("stale" if stale else "hit")
    return CachedRead(entry.body, cached=True, etag=entry.etag, stale=stale)


def _load_uncached(loader: Loader) -> CachedRead:
    data = loader()
    return CachedRead.from_data(data)


def _load_after_redis_failed(slot: _Slot, key: str, loader: Loader) -> CachedRead:
    """The database, after one Redis call failed. If the database fails too, ask Redis once
    more before answering 503: one timed-out GET (a busy machine, a slow network moment) does
    not open the breaker, and while Postgres is down a user with a cached entry must still be
    served. That second GET is as fresh as any hit: it reads what invalidation left."""
    try:
        result = _load_uncached(loader)
        metrics.record_cache_read("bypass")
        return result
    except DatabaseError:
        try:
            raw = _call(lambda r: r.get(key))
        except CacheUnavailable:
            raw = None
        entry = _decode_entry(raw, slot) if raw is not None else None
        if entry is None:
            raise
    logger.warning(
        "Serving %s from Redis on a second try: the first failed and so did the database",
        slot.describe(),
    )
    return _hit(entry, stale=time.time() >= entry.expires_at)


def _miss(slot: _Slot, key: str, loader: Loader, started: float) -> CachedRead:
    lease_key = _full_key(slot.lease_key)
    token = secrets.token_hex(8)
    deadline = time.monotonic() + settings.CACHE_LEASE_WAIT_MS / 1000
    pause = 0.002
    while True:
        try:
            reply = _call(
                lambda r: _ACQUIRE(
                    keys=[key, lease_key], args=[token, settings.CACHE_LEASE_MS], client=r
                )
            )
        except CacheUnavailable as e:
            logger.debug("Reading %s from DB: %s", slot.describe(), e)
            metrics.record_cache_read("bypass")
            return _load_uncached(loader)
        if reply[0] == 1:
            entry = _decode_entry(reply[1], slot)
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
            return _fill_holding_lease(slot, key, lease_key, token, loader)
        if time.monotonic() >= deadline:
            # The filler is slow or dead and its lease has not expired yet: answer from the DB
            # without caching rather than keep this request waiting longer.
            logger.warning("Lease wait for %s timed out; reading DB", slot.describe())
            stats.record("misses")
            metrics.record_cache_read("miss")
            metrics.record_lease_wait_timeout()
            return _load_uncached(loader)
        if pause == 0.002:  # this read's first wait for another reader's fill
            metrics.record_lease_wait()
        time.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def _fill_holding_lease(
    slot: _Slot, key: str, lease_key: str, token: str, loader: Loader
) -> CachedRead:
    db_started = time.perf_counter()
    try:
        data = loader()
    except BaseException:
        # Let the next reader take over at once instead of waiting out the lease.
        with contextlib.suppress(CacheUnavailable):
            _call(lambda r: _RELEASE(keys=[lease_key], args=[token], client=r))
        raise
    db_seconds = time.perf_counter() - db_started
    result = CachedRead.from_data(data)
    payload = _encode_entry(slot, result.body, result.etag, db_seconds)
    try:
        stored = _call(
            lambda r: _FILL(keys=[key, lease_key], args=[token, payload, _ttl_ms(slot)], client=r)
        )
    except CacheUnavailable as e:
        logger.warning("Could not cache %s: %s", slot.describe(), e)
        stored = 0
    stats.record("misses")
    metrics.record_cache_read("miss")
    metrics.record_fill(stored=bool(stored))
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
    return result


def _should_refresh_early(entry: _Entry) -> bool:
    beta = settings.CACHE_XFETCH_BETA
    if beta <= 0 or _naive():
        return False
    # 1 - random() is in (0, 1], so the log is finite and <= 0.
    return time.time() - entry.delta * beta * math.log(1.0 - random.random()) >= entry.expires_at


def _refresh(
    slot: _Slot, key: str, loader: Loader, entry: _Entry, raw: bytes | str
) -> CachedRead | None:
    """Reload an entry that is expiring (XFetch) or expired. None: keep serving `entry`.

    Only the lease holder reloads; everyone else keeps getting the current entry meanwhile. If
    the database fails and the entry is past its TTL, it is served marked stale (RFC 5861
    stale-if-error) rather than failing the request.
    """
    lease_key = _full_key(slot.lease_key)
    token = secrets.token_hex(8)
    try:
        granted = _call(
            lambda r: _REFRESH_LEASE(
                keys=[key, lease_key], args=[raw, token, settings.CACHE_LEASE_MS], client=r
            )
        )
    except CacheUnavailable:
        return None
    if not granted:
        return None  # already refreshed or being refreshed: keep serving what we read
    logger.info("Refreshing %s before it expires", slot.describe())
    try:
        return _fill_holding_lease(slot, key, lease_key, token, loader)
    except DatabaseError as e:
        if time.time() < entry.expires_at:
            return None
        logger.warning("Serving %s past its TTL, database unavailable: %s", slot.describe(), e)
        return _hit(entry, stale=True)


def _naive_miss(slot: _Slot, key: str, loader: Loader) -> CachedRead:
    """The textbook version the consistency checker must catch: read the DB, then plain SET."""
    db_started = time.perf_counter()
    result = CachedRead.from_data(loader())
    payload = _encode_entry(slot, result.body, result.etag, time.perf_counter() - db_started)
    with contextlib.suppress(CacheUnavailable):
        _call(lambda r: r.set(key, payload, px=_ttl_ms(slot)))
    stats.record("misses")
    metrics.record_cache_read("miss")
    return result


def _delete_quietly(key: str) -> None:
    with contextlib.suppress(CacheUnavailable):
        _call(lambda r: r.delete(key))


# --- The contract's helpers -----------------------------------------------------------------
def get_cached_platform_status(user_id: object) -> dict[str, Any] | None:
    """The cached status, or None (also when caching is off or Redis is down)."""
    slot = _status_slot(user_id)
    if not enabled():
        return None
    key = _full_key(slot.key)
    try:
        raw = _call(lambda r: r.get(key))
    except CacheUnavailable:
        return None
    entry = _decode_entry(raw, slot) if raw is not None else None
    return json.loads(entry.body) if entry else None


def acquire_platform_status_lease(user_id: object) -> str | None:
    """A lease to fill this user's entry; take it *before* reading the database."""
    slot = _status_slot(user_id)
    if not enabled():
        return None
    token = secrets.token_hex(8)
    lease_key = _full_key(slot.lease_key)
    try:
        taken = _call(lambda r: r.set(lease_key, token, nx=True, px=settings.CACHE_LEASE_MS))
    except CacheUnavailable:
        return None
    return token if taken else None


def set_cached_platform_status(
    user_id: object, status: dict[str, Any], *, lease: str, fill_seconds: float = 0.0
) -> bool:
    """Store `status` if `lease` is still valid; False if an invalidation came first."""
    slot = _status_slot(user_id)
    if not enabled():
        return False
    keys = [_full_key(slot.key), _full_key(slot.lease_key)]
    body = _dumps(status)
    payload = _encode_entry(slot, body, _etag(body), fill_seconds)
    try:
        return bool(
            _call(lambda r: _FILL(keys=keys, args=[lease, payload, _ttl_ms(slot)], client=r))
        )
    except CacheUnavailable:
        return False


def invalidate_platform_status_cache(user_id: object) -> bool:
    """Drop the user's entry and any outstanding lease now. False if Redis could not be told."""
    return _invalidate(_status_slot(user_id))


def invalidate_platform_status_many(
    user_ids: Iterable[str], *, bypass_breaker: bool = False
) -> bool:
    """Drop many users' entries in one pipelined round trip (outbox replay)."""
    if not enabled():
        return True
    slots = [_status_slot(u) for u in user_ids]

    def delete_all(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=False)
        for slot in slots:
            # One DEL per user: both keys share the user's hash slot.
            pipe.delete(_full_key(slot.key), _full_key(slot.lease_key))
        pipe.execute()

    try:
        _call(delete_all, bypass_breaker=bypass_breaker)
    except CacheUnavailable as e:
        logger.warning("Could not replay %d invalidation(s): %s", len(slots), e)
        metrics.record_invalidation_failure(len(slots))
        return False
    return True


def _invalidate(slot: _Slot) -> bool:
    if not enabled():
        return True
    started = time.perf_counter()
    keys = (_full_key(slot.key), _full_key(slot.lease_key))
    try:
        # One DEL for both keys (same hash slot): a filler holding the old lease can no longer
        # store what it read before this point. Forced through an open breaker (see _call).
        _call(lambda r: r.delete(*keys), force=True)
    except CacheUnavailable as e:
        logger.error("Could not invalidate %s (kept for replay): %s", slot.describe(), e)
        metrics.record_invalidation_failure()
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
    pending: list[int] | None = None
    if conn.in_atomic_block:
        _dirty_keys(conn).add(slot.key)
        if slot.kind == "platform_status":
            from connectors import outbox

            # Read the user's outbox rows now, inside the writing transaction: its own rows and
            # those others committed before are all committed by the time the DEL below runs,
            # so that DEL covers them, and it follows the commit without a query in between.
            pending = outbox.pending_ids_for(slot.ident, using=using)
    transaction.on_commit(
        lambda: _invalidate_after_commit(slot, conn, pending), using=using, robust=True
    )


def _invalidate_after_commit(
    slot: _Slot, conn: BaseDatabaseWrapper, pending: list[int] | None
) -> None:
    if slot.kind == "platform_status":
        from connectors import outbox

        if pending is None:
            # Autocommit: the write is committed already. Rows visible now committed before
            # the DEL; rows committed later wait for their own DEL or a replay.
            pending = outbox.pending_ids_for(slot.ident, using=conn.alias)
        if _invalidate(slot):
            outbox.acknowledge_soon(pending, using=conn.alias)
    else:
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
    return int(_call(lambda r: r.delete(*[_full_key(k) for k in keys])))


def _scan_delete(match: str, batch: int) -> int:
    """SCAN and delete in batches: never KEYS, which would block Redis."""

    def run(r: redis.Redis) -> int:
        deleted = 0
        chunk: list[bytes] = []
        for key in r.scan_iter(match=match, count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += int(r.unlink(*chunk))
                chunk.clear()
        if chunk:
            deleted += int(r.unlink(*chunk))
        return deleted

    return _call(run) if enabled() else 0


def clear_all(*, batch: int = 500) -> int:
    """Delete this deployment's keys only: SCAN by prefix, never FLUSHDB / FLUSHALL."""
    return _scan_delete(_prefix_pattern(), batch)


def invalidate_all_platform_status(*, batch: int = 500) -> int:
    """Delete every platform_status entry and lease of this deployment; the number deleted.

    The NOTIFY listener's epoch bump (connectors/listener.py): notifications sent while it was
    disconnected are lost, so after every (re)connect it drops every status entry, and the
    leases with them so that no filler that read the database before can still store. Unlike
    clear_all() it leaves rate limits, profiles and stats alone.
    """
    if not enabled():
        return 0
    # Glob metacharacters in the deployment prefix must match literally.
    literal = "".join(f"\\{c}" if c in "\\*?[]" else c for c in _full_key("platform_status:"))
    return _scan_delete(literal + "*", batch)


def health() -> str:
    """ "off" (no Redis configured), "ok", or "degraded" (breaker not closed, undelivered
    invalidations, or no answer to PING)."""
    if not enabled():
        return "off"
    if _undelivered.is_set() or (_breaker_on() and breaker.state is not State.CLOSED):
        return "degraded"
    try:
        _call(lambda r: r.ping())
    except CacheUnavailable:
        return "degraded"
    return "ok"
