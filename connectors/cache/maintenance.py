"""Whole-deployment operations, never on a request path: clear keys by prefix (SCAN, never
KEYS or FLUSH*), the listener's epoch bump, cache statistics and health."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from connectors.cache import store, topology
from connectors.cache.keys import STATS_KEY, glob_escape, user_keys
from connectors.cache.stats import FIELDS, counters
from connectors.errors import CacheUnavailable
from connectors.ids import normalize_user_id


def _pattern(key_start: str) -> str:
    """A SCAN pattern for this deployment's keys beginning with `key_start`, whatever glob
    characters the deployment's prefix holds."""
    return glob_escape(store.full_key(key_start)) + "*"


def clear_user(user_id: object) -> int:
    """Delete every key of one user (status, lease, profile, signature, rate limits)."""
    keys = [store.full_key(k) for k in user_keys(normalize_user_id(user_id))]
    if not store.enabled():
        return 0
    return int(store.call_maintenance(lambda r: r.delete(*keys)))


def _scan_delete(match: str, batch: int) -> int:
    if not store.enabled():
        return 0
    return store.call_maintenance(lambda r: topology.scan_unlink(r, match, batch))


def clear_all(*, batch: int = 500) -> int:
    """Delete this deployment's keys only: SCAN by prefix, never FLUSHDB / FLUSHALL."""
    return _scan_delete(_pattern(""), batch)


def invalidate_all_platform_status(*, batch: int = 500) -> int:
    """Delete every platform_status entry and lease of this deployment; the number deleted.

    The NOTIFY listener's epoch bump: notifications sent while it was disconnected are lost, so
    after every (re)connect it drops every status entry, and the leases with them so that no
    filler that read the database before can still store. Rate limits and stats stay.
    """
    return _scan_delete(_pattern("platform_status:"), batch)


def cache_stats() -> dict[str, Any]:
    counters.flush()
    result: dict[str, Any] = {
        "backend": store.backend_name(),
        "enabled": store.enabled(),
        "breaker": store.breaker_state(),
        "undelivered_invalidations": store.undelivered(),
    }
    if not store.enabled():
        pending = counters.pending()
        result.update(pending, keys=0, redis_memory=None)
    else:
        # Not through the breaker (nothing here is a request's read), but not 5 s either.
        counts, keys, memory = store.call_maintenance(_collect, 1.0)
        result.update(
            **{field: _count(counts.get(field.encode())) for field in FIELDS},
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


def _collect(r: Any) -> tuple[dict[Any, Any], int, dict[str, Any]]:
    try:
        counts = r.hgetall(store.full_key(STATS_KEY))
    except redis.ResponseError:
        counts = {}  # not a hash (planted): the flusher replaces it
    keys = sum(1 for _ in topology.scan(r, _pattern(""), 1000))
    memory: dict[str, Any] = {}
    for node in topology.primaries(r):
        for name, value in node.info("memory").items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                memory[name] = memory.get(name, 0) + value  # a Cluster's nodes, added up
            else:
                memory.setdefault(name, value)
    return counts, keys, memory


def _count(raw: Any) -> int:
    """A counter from the stats hash; anything but a whole number (planted) counts as 0."""
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


def health() -> str:
    """ "off" (no Redis configured), "ok", or "degraded" (breaker not closed, undelivered
    invalidations, or no answer to PING)."""
    if not store.enabled():
        return "off"
    if store.undelivered() or not store.breaker_closed():
        return "degraded"
    try:
        store.call(lambda r: r.ping())
    except CacheUnavailable:
        return "degraded"
    return "ok"
