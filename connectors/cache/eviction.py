"""The DELs that invalidate: an entry together with its lease, one user or many at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

from connectors import metrics
from connectors.cache import store
from connectors.cache.keys import Slot, status_slot
from connectors.errors import CacheUnavailable

logger = logging.getLogger("connectors.cache")


def evict(slot: Slot) -> bool:
    """Delete the entry and any outstanding lease now; False if Redis could not be told."""
    if not store.enabled():
        return True
    started = time.perf_counter()
    keys = (store.full_key(slot.key), store.full_key(slot.lease_key))
    try:
        # One DEL for both keys (same hash slot): a filler holding the old lease can no longer
        # store what it read before this point. Forced through an open breaker (store.call).
        store.call(lambda r: r.delete(*keys), force=True)
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


def evict_users(user_ids: Iterable[str], *, bypass_breaker: bool = False) -> bool:
    """Drop many users' status entries and leases in one pipelined round trip."""
    if not store.enabled():
        return True
    slots = [status_slot(u) for u in user_ids]

    def delete_all(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=False)
        for slot in slots:
            # One DEL per user: both keys share the user's hash slot.
            pipe.delete(store.full_key(slot.key), store.full_key(slot.lease_key))
        pipe.execute()

    try:
        store.call(delete_all, bypass_breaker=bypass_breaker)
    except CacheUnavailable as e:
        logger.warning("Could not replay %d invalidation(s): %s", len(slots), e)
        metrics.record_invalidation_failure(len(slots))
        return False
    return True
