"""The seed's Express-style helpers (getCachedPlatformStatus, setCachedPlatformStatus, get, set,
del), for callers that manage a fill themselves. They degrade like the read path: quietly, fast.

Generic values go through django-redis' client (not RedisCache, whose IGNORE_EXCEPTIONS would hide
failures from the breaker), serialised as JSON (connectors.cache.serializer).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

from django.conf import settings

from connectors.cache import store
from connectors.cache.entry import CachedRead, decode
from connectors.cache.keys import status_slot
from connectors.cache.readthrough import read_bounded, store_with_lease
from connectors.errors import CacheUnavailable


def get_cached_platform_status(user_id: object) -> dict[str, Any] | None:
    """The cached status, or None (also when caching is off or Redis is down)."""
    slot = status_slot(user_id)
    if not store.enabled():
        return None
    key = store.full_key(slot.key)
    try:
        raw = store.call(lambda r: read_bounded(r, key), key=key)
    except CacheUnavailable:
        return None
    entry = decode(raw, slot, key) if raw is not None else None
    return json.loads(entry.body) if entry else None


def acquire_platform_status_lease(user_id: object) -> str | None:
    """A lease to fill this user's entry; take it *before* reading the database."""
    slot = status_slot(user_id)
    if not store.enabled():
        return None
    token = secrets.token_hex(8)
    lease_key = store.full_key(slot.lease_key)
    try:
        taken = store.call(
            lambda r: r.set(lease_key, token, nx=True, px=settings.CACHE_LEASE_MS), key=lease_key
        )
    except CacheUnavailable:
        return None
    return token if taken else None


def set_cached_platform_status(
    user_id: object, status: dict[str, Any], *, lease: str, fill_seconds: float = 0.0
) -> bool:
    """Store `status` if `lease` is still valid; False if an invalidation came first."""
    slot = status_slot(user_id)
    if not store.enabled():
        return False
    lease_key = store.full_key(slot.lease_key)
    return store_with_lease(slot, CachedRead.from_data(status), lease_key, lease, fill_seconds)


def get_value(key: str, default: Any = None) -> Any:
    if not store.enabled():
        return default
    try:
        return store.call(
            lambda r: store.backend().client.get(key, default=default, client=r),
            key=store.full_key(key),
        )
    except CacheUnavailable:
        return default


def set_value(key: str, value: Any, ttl: float) -> None:
    if store.enabled():
        with contextlib.suppress(CacheUnavailable):
            store.call(
                lambda r: store.backend().client.set(key, value, timeout=ttl, client=r),
                key=store.full_key(key),
            )


def delete_value(key: str) -> None:
    if store.enabled():
        with contextlib.suppress(CacheUnavailable):
            store.call(
                lambda r: store.backend().client.delete(key, client=r), key=store.full_key(key)
            )
