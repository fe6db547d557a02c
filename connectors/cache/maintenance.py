"""Whole-deployment operations, never on a request path: clear keys by prefix (SCAN, never
KEYS or FLUSH*), the listener's epoch bump, cache statistics and health."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from connectors.cache import store
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

    return store.call_maintenance(run) if store.enabled() else 0


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

        def collect(r: redis.Redis) -> tuple[dict[Any, Any], int, dict[str, Any]]:
            counts = r.hgetall(store.full_key(STATS_KEY))
            keys = sum(1 for _ in r.scan_iter(match=_pattern(""), count=1000))
            return counts, keys, r.info("memory")

        counts, keys, memory = store.call(collect)
        result.update(
            **{field: int(counts.get(field.encode(), 0)) for field in FIELDS},
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
