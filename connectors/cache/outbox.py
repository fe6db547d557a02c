"""The durable half of invalidation: replaying what the on-commit DEL could not deliver.

A trigger writes a PendingInvalidation row in the same transaction as every change to a user's
connections; rows whose DEL succeeded are acknowledged (deleted in the sweeper's next pass), and
the rest are replayed by the breaker's probe and by a sweeper thread. While rows are known to be
undelivered and cannot be replayed, reads bypass Redis. The argument: docs/architecture.md
("The outbox").
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, transaction
from django.utils import timezone

from connectors import metrics
from connectors.cache import eviction, store
from connectors.cache.threads import PerProcessThread
from connectors.models import PendingInvalidation

logger = logging.getLogger("connectors.cache")


def pending_ids_for(user_id: str, *, using: str | None = None) -> list[int]:
    """Ids visible now: all committed before the DEL that follows this read."""
    rows = PendingInvalidation.objects.using(using).filter(user_id=user_id)
    return list(rows.values_list("id", flat=True))


def acknowledge(ids: Iterable[int], *, using: str | None = None) -> None:
    ids = list(ids)
    if ids:
        PendingInvalidation.objects.using(using).filter(id__in=ids).delete()


class _Acknowledged:
    """Ids whose DEL went through, waiting for the sweeper to delete them. Bounded: if the
    sweeper falls behind, callers acknowledge at once instead."""

    LIMIT = 10_000  # also keeps one DELETE ... WHERE id IN (...) far below Postgres' 65,535 params

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[int] = []

    def add(self, ids: list[int]) -> bool:
        with self._lock:
            if len(self._ids) + len(ids) > self.LIMIT:
                return False
            self._ids.extend(ids)
            return True

    def take(self) -> list[int]:
        with self._lock:
            ids, self._ids = self._ids, []
            return ids

    def give_back(self, ids: list[int]) -> None:
        with self._lock:
            self._ids[:0] = ids


_acknowledged = _Acknowledged()


def acknowledge_soon(ids: list[int], *, using: str | None = None) -> None:
    """Forget rows whose DEL went through: in the sweeper's next pass, or at once when there
    is no sweeper (or it has fallen far behind)."""
    if not ids:
        return
    if (
        settings.CACHE_OUTBOX_SWEEP_SECONDS > 0
        and using in (None, DEFAULT_DB_ALIAS)
        and _acknowledged.add(ids)
    ):
        sweeper.ensure_running()
        return
    acknowledge(ids, using=using)


@atexit.register
def _acknowledge_before_exit() -> None:
    """A process that ends before its sweeper's next pass (a management command, a worker
    shut down) deletes what it acknowledged; otherwise each of those rows would be replayed
    once, a needless DEL. Best effort: a killed process leaves them to that replay."""
    ids = _acknowledged.take()
    if ids:
        with contextlib.suppress(Exception):
            acknowledge(ids)


def _next_batch(cutoff: datetime | None, batch: int) -> list[tuple[int, uuid.UUID]]:
    """Delete what was acknowledged and read the oldest pending rows, in one transaction: the
    read no longer sees the rows just deleted, so they are not replayed again."""
    acknowledged = _acknowledged.take()
    try:
        with transaction.atomic() if acknowledged else contextlib.nullcontext():
            acknowledge(acknowledged)
            queryset = PendingInvalidation.objects.order_by("id")
            if cutoff is not None:
                queryset = queryset.filter(created_at__lte=cutoff)
            return list(queryset.values_list("id", "user_id")[:batch])
    except BaseException:
        _acknowledged.give_back(acknowledged)
        raise


def replay(*, older_than: float | None = None, batch: int = 1000) -> bool:
    """Invalidate every user with pending rows, then acknowledge those rows. True if none is
    left unsent (rows written meanwhile wait for their own DEL or the next replay)."""
    cutoff = timezone.now() - timedelta(seconds=older_than) if older_than else None
    while True:
        rows = _next_batch(cutoff, batch)
        if not rows:
            return True
        users = {str(user_id) for _, user_id in rows}
        if not eviction.evict_users(users, bypass_breaker=True):
            return False
        metrics.record_invalidations("outbox_replay", len(users))
        acknowledge_soon([row_id for row_id, _ in rows])
        logger.info("Replayed %d pending invalidation(s) for %d user(s)", len(rows), len(users))
        if len(rows) < batch:
            return True


def sweep_once() -> bool:
    """One sweeper pass: replay old pending rows, or mark the cache untrustworthy. False if
    the database could not be asked."""
    try:
        delivered = replay(older_than=settings.CACHE_OUTBOX_GRACE_SECONDS)
    except DatabaseError as e:
        # Nothing can be learned without the database; keep the current verdict.
        metrics.record_db_error("outbox")
        logger.debug("Outbox sweep skipped, database unavailable: %s", e)
        return False
    store.set_undelivered(not delivered)
    return True


# While the database is unreachable the sweeper retries this often, so that rows written just
# before an outage are replayed within a fraction of a second of its end.
_RETRY_SECONDS = 0.1


class _Sweeper:
    def __init__(self) -> None:
        self._thread = PerProcessThread("outbox-sweeper", self._run)
        self.passes = 0  # in this process; `make bench` separates this background from requests

    def ensure_running(self) -> None:
        if settings.CACHE_OUTBOX_SWEEP_SECONDS > 0:
            self._thread.ensure_started()

    def _run(self) -> None:
        interval = settings.CACHE_OUTBOX_SWEEP_SECONDS
        pause = interval
        while True:
            time.sleep(pause)
            self.passes += 1
            try:
                pause = interval if sweep_once() else min(interval, _RETRY_SECONDS)
            except Exception:  # the sweeper must outlive any single failure
                logger.exception("Outbox sweep failed")
            finally:
                close_old_connections()


sweeper = _Sweeper()
