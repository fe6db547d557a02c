"""Invalidation on commit, and the cache bypass for keys written in the current transaction.

A DEL sent inside the transaction would let a concurrent reader re-cache the pre-commit row; one
sent after commit leaves this transaction's own later reads stale (zulip #24416). So the DEL is
deferred to commit (as cacheops' queue_when_in_transaction) and, until then, reads of those keys
in this transaction go to the database. See docs/architecture.md ("Invalidation").
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from connectors import metrics
from connectors.cache import outbox
from connectors.cache.eviction import evict
from connectors.cache.keys import Slot, job_slot, status_slot

_DIRTY_ATTR = "_connectors_dirty_keys"


def _dirty_keys(conn: BaseDatabaseWrapper) -> set[str]:
    dirty: set[str] | None = getattr(conn, _DIRTY_ATTR, None)
    if dirty is None:
        dirty = set()
        setattr(conn, _DIRTY_ATTR, dirty)
    return dirty


def invalidate_platform_status_cache(user_id: object, *, source: str = "admin") -> bool:
    """Drop the user's entry and any outstanding lease now. False if Redis could not be told."""
    delivered = evict(status_slot(user_id))
    if delivered:
        metrics.record_invalidations(source)
    return delivered


def invalidate_platform_status_on_commit(
    user_id: object, *, using: str | None = None, source: str = "signal"
) -> None:
    """Invalidate once the current transaction commits (at once in autocommit). `source` names
    the kind of write in the invalidations metric (signal, update, admin, ...)."""
    schedule(status_slot(user_id), using, source)


def invalidate_extraction_job_on_commit(job_id: object, *, using: str | None = None) -> None:
    schedule(job_slot(job_id), using, "signal")


def schedule(slot: Slot, using: str | None, source: str) -> None:
    conn = transaction.get_connection(using)
    pending: list[int] | None = None
    if conn.in_atomic_block:
        _dirty_keys(conn).add(slot.key)
        if slot.kind == "platform_status":
            # Read the user's outbox rows now, inside the writing transaction: its own rows and
            # those others committed before are all committed by the time the DEL below runs,
            # so that DEL covers them, and it follows the commit without a query in between.
            pending = outbox.pending_ids_for(slot.ident, using=using)
    transaction.on_commit(
        lambda: _after_commit(slot, conn, pending, source), using=using, robust=True
    )


def _after_commit(
    slot: Slot, conn: BaseDatabaseWrapper, pending: list[int] | None, source: str
) -> None:
    if slot.kind == "platform_status":
        if pending is None:
            # Autocommit: the write is committed already. Rows visible now committed before
            # the DEL; rows committed later wait for their own DEL or a replay.
            pending = outbox.pending_ids_for(slot.ident, using=conn.alias)
        if evict(slot):
            outbox.acknowledge_soon(pending, using=conn.alias)
            metrics.record_invalidations(source)
    else:
        evict(slot)
    if not conn.in_atomic_block:
        _dirty_keys(conn).discard(slot.key)


def is_dirty(slot: Slot, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Was `slot` written in the transaction now open on `using` (reads must bypass Redis)?"""
    conn = transaction.get_connection(using)
    dirty = _dirty_keys(conn)
    if not conn.in_atomic_block:
        # Left over from a rolled-back transaction: nothing is pending any more.
        dirty.clear()
        return False
    return slot.key in dirty
