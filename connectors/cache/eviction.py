"""The DELs that invalidate: an entry together with its lease, one user or many at once.

Each user's two keys go in one DEL (one hash slot), sent to the master of that slot and counted
as delivered only as connectors.cache.topology.delete() says (WAIT, or the topology confirming
the node is still master): docs/architecture.md ("Failover").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.conf import settings

from connectors import metrics
from connectors.cache import store, topology
from connectors.cache.keys import Slot, status_slot
from connectors.errors import CacheUnavailable

logger = logging.getLogger("connectors.cache")


def _wait() -> tuple[int, int]:
    """(replicas a DEL must reach, WAIT's timeout in ms: half the request timeout, so that
    WAIT answers before the socket gives up on it)."""
    return settings.REDIS_WAIT_REPLICAS, max(1, int(store.base_timeout() * 500))


def evict(slot: Slot) -> bool:
    """Delete the entry and any outstanding lease now; False if not known to be delivered."""
    if not store.enabled():
        return True
    started = time.perf_counter()
    keys = (store.full_key(slot.key), store.full_key(slot.lease_key))
    replicas, timeout_ms = _wait()

    def delete(r: object) -> None:
        # One DEL for both keys (same hash slot): a filler holding the old lease can no longer
        # store what it read before this point.
        failures = topology.delete(r, [keys], replicas=replicas, timeout_ms=timeout_ms)
        if failures:
            raise failures[0]

    try:
        # Forced through an open breaker (store.call).
        store.call(delete, key=keys[0], force=True)
    except CacheUnavailable as e:
        logger.error("Could not invalidate %s (kept for replay): %s", slot.describe(), e)
        metrics.record_invalidation_failure()
        store.trip(keys[0], "an invalidation could not be delivered")
        return False
    logger.info(
        "Invalidated %s cache for %s %s (%.1fms)",
        slot.kind,
        slot.label,
        slot.ident,
        (time.perf_counter() - started) * 1000,
    )
    return True


def evict_users(user_ids: Iterable[str], *, bypass_breaker: bool = False) -> set[str]:
    """Drop many users' status entries and leases, one pipeline per master node; the users
    whose invalidation is not known to be delivered (empty: all were)."""
    users = list(dict.fromkeys(user_ids))
    if not store.enabled() or not users:
        return set()
    slots = [status_slot(u) for u in users]
    groups = [(store.full_key(s.key), store.full_key(s.lease_key)) for s in slots]
    replicas, timeout_ms = _wait()
    try:
        failures = store.call(
            lambda r: topology.delete(r, groups, replicas=replicas, timeout_ms=timeout_ms),
            bypass_breaker=bypass_breaker,
        )
    except CacheUnavailable as e:
        logger.warning("Could not replay %d invalidation(s): %s", len(users), e)
        metrics.record_invalidation_failure(len(users))
        return set(users)
    if failures:
        metrics.record_invalidation_failure(len(failures))
        logger.warning(
            "Could not replay %d of %d invalidation(s): %s",
            len(failures),
            len(users),
            next(iter(failures.values())),
        )
    return {users[i] for i in failures}


def shard_of_user(user_id: str) -> int:
    """The shard holding this user's status entry (topology.ALL unless a Cluster)."""
    return topology.shard_of(store.redis_client(), store.full_key(status_slot(user_id).key))
