"""The durable half of invalidation: replaying what the on-commit DEL could not deliver.

A trigger writes a PendingInvalidation row in the same transaction as every change to a user's
connections; rows whose DEL succeeded are marked delivered (in the sweeper's next pass) and kept
CACHE_OUTBOX_RETENTION_SECONDS, to be replayed again when Redis' master changes. Undelivered
rows are replayed by the breaker's probe and by one sweeper per host, which tells the host's
other processes when invalidations are undelivered (their reads then bypass Redis).
docs/architecture.md ("The outbox", "Failover", "Background work").
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, transaction
from django.db.models.functions import Now
from django.utils import timezone

from connectors import metrics
from connectors.cache import eviction, store, topology
from connectors.cache.election import HostElection
from connectors.cache.threads import PerProcessThread
from connectors.errors import CacheUnavailable
from connectors.models import PendingInvalidation

logger = logging.getLogger("connectors.cache")


def pending_ids_for(user_id: str, *, using: str | None = None) -> list[int]:
    """Undelivered ids visible now: all committed before the DEL that follows this read."""
    rows = PendingInvalidation.objects.using(using).filter(user_id=user_id)
    return list(rows.filter(delivered_at__isnull=True).values_list("id", flat=True))


def acknowledge(ids: Iterable[int], *, using: str | None = None) -> None:
    ids = list(ids)
    if not ids:
        return
    rows = PendingInvalidation.objects.using(using).filter(id__in=ids)
    if settings.CACHE_OUTBOX_RETENTION_SECONDS > 0:
        rows.filter(delivered_at__isnull=True).update(delivered_at=Now())
    else:
        rows.delete()


class _Acknowledged:
    """Ids whose DEL went through, waiting for the sweeper to mark them. Bounded: if the
    sweeper falls behind, callers acknowledge at once instead."""

    LIMIT = 10_000  # also keeps one UPDATE ... WHERE id IN (...) far below Postgres' 65,535 params

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
    """Mark rows whose DEL went through: in this process's sweeper's next pass, or at once
    when there is no sweeper (or it has fallen far behind)."""
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
    shut down) marks what it acknowledged; otherwise each of those rows would be replayed
    once, a needless DEL. Best effort: a killed process leaves them to that replay."""
    ids = _acknowledged.take()
    if ids:
        with contextlib.suppress(Exception):
            acknowledge(ids)


def _next_batch(
    cutoff: datetime | None, batch: int, after: int, since: datetime | None
) -> list[tuple[int, uuid.UUID]]:
    """Mark what was acknowledged and read the next rows to replay, in one transaction: the
    read no longer sees the rows just marked, so they are not replayed again. `since`: every
    row written since then, delivered or not (a master change's window)."""
    acknowledged = _acknowledged.take()
    try:
        with transaction.atomic() if acknowledged else contextlib.nullcontext():
            acknowledge(acknowledged)
            queryset = PendingInvalidation.objects.filter(id__gt=after).order_by("id")
            if since is not None:
                queryset = queryset.filter(created_at__gte=since)
            else:
                queryset = queryset.filter(delivered_at__isnull=True)
            if cutoff is not None:
                queryset = queryset.filter(created_at__lte=cutoff)
            return list(queryset.values_list("id", "user_id")[:batch])
    except BaseException:
        _acknowledged.give_back(acknowledged)
        raise


def replay(
    *,
    older_than: float | None = None,
    batch: int = 1000,
    shard: int | None = None,
    since: datetime | None = None,
) -> frozenset[int]:
    """Invalidate every user with undelivered rows (or, with `since`, every row written since
    then), only those of `shard` if given, and mark the rows delivered. The shards left with
    undelivered rows (empty: none); rows written meanwhile wait for their own DEL or a replay."""
    cutoff = timezone.now() - timedelta(seconds=older_than) if older_than else None
    after, failed = 0, set[int]()
    while True:
        rows = _next_batch(cutoff, batch, after, since)
        if not rows:
            return frozenset(failed)
        after, fetched = rows[-1][0], len(rows)
        if shard is not None:
            rows = [row for row in rows if eviction.shard_of_user(str(row[1])) == shard]
        users = {str(user_id) for _, user_id in rows}
        undelivered = eviction.evict_users(users, bypass_breaker=True)
        acknowledge_soon([row_id for row_id, user in rows if str(user) not in undelivered])
        failed |= {eviction.shard_of_user(user) for user in undelivered}
        if users - undelivered:
            metrics.record_invalidations("outbox_replay", len(users - undelivered))
            logger.info(
                "Replayed %d invalidation(s) for %d user(s)", len(rows), len(users - undelivered)
            )
        if fetched < batch or topology.ALL in failed:
            return frozenset(failed)


def sweep_once() -> bool:
    """One sweeper pass: replay old undelivered rows (and the retention window after a master
    change), and mark the shards that could not be told. False if the database could not be
    asked."""
    try:
        failed = replay(older_than=settings.CACHE_OUTBOX_GRACE_SECONDS)
        failed |= _watch_topology()
        _purge()
    except DatabaseError as e:
        # Nothing can be learned without the database; keep the current verdict.
        metrics.record_db_error("outbox")
        logger.debug("Outbox sweep skipped, database unavailable: %s", e)
        return False
    store.set_undelivered(failed)
    return True


# After a master change the window is replayed again on every pass for this long: DELs the old
# master still acknowledged (through a replica not yet re-pointed) land after the first replay.
SETTLE_SECONDS = 10.0
_watch: dict[str, Any] = {"fingerprint": None, "changed_at": None}


def _watch_topology() -> frozenset[int]:
    """Replay the retention window when the master of a shard changed (failover, restart)."""
    if not store.enabled() or settings.CACHE_OUTBOX_RETENTION_SECONDS <= 0:
        return frozenset()
    try:
        # A short timeout: a paused Redis must not stall the sweeper's passes.
        found = store.call_maintenance(topology.fingerprint, store.confirm_timeout())
        current = {str(k): v for k, v in found.items()}
    except CacheUnavailable:
        return frozenset()  # asked again next pass; a change is seen once Redis answers
    location = repr(settings.CACHES["default"].get("LOCATION"))
    if _watch.get("location") != location:  # another Redis altogether (tests switch)
        _watch.update(location=location, fingerprint=None, changed_at=None)
    previous, _watch["fingerprint"] = _watch["fingerprint"], current
    now = timezone.now()
    if previous is not None and current != previous:
        logger.warning(
            "Redis master changed (%s -> %s): replaying the last %g s of invalidations",
            previous,
            current,
            settings.CACHE_OUTBOX_RETENTION_SECONDS,
        )
        _watch["changed_at"] = now
        return replay(since=now - timedelta(seconds=settings.CACHE_OUTBOX_RETENTION_SECONDS))
    changed_at = _watch["changed_at"]
    if changed_at is not None and (now - changed_at).total_seconds() < SETTLE_SECONDS:
        return replay(since=changed_at - timedelta(seconds=settings.CACHE_OUTBOX_GRACE_SECONDS))
    return frozenset()


_PURGE_SECONDS = 10.0
_last_purge = 0.0


def _purge() -> None:
    """Delete rows delivered longer than the retention window ago, every _PURGE_SECONDS."""
    global _last_purge
    if time.monotonic() - _last_purge < _PURGE_SECONDS:
        return
    _last_purge = time.monotonic()
    keep = timedelta(seconds=settings.CACHE_OUTBOX_RETENTION_SECONDS)
    PendingInvalidation.objects.filter(delivered_at__lt=timezone.now() - keep).delete()


# While the database is unreachable the sweeper retries this often, so that rows written just
# before an outage are replayed within a fraction of a second of its end.
_RETRY_SECONDS = 0.1


def election_name() -> str:
    """One election per deployment on a host: its database, Redis and key prefix."""
    db = settings.DATABASES["default"]
    location = settings.CACHES["default"].get("LOCATION")
    identity = repr(
        (db.get("HOST"), db.get("PORT"), db.get("NAME"), settings.CACHE_KEY_PREFIX, location)
    )
    return "connectors-sweeper-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


class _Sweeper:
    """One per host leads (connectors.cache.election): it replays and publishes which shards
    are undelivered; the others only mark their own acknowledgements and follow that verdict,
    so the database's idle load does not grow with the number of processes."""

    def __init__(self) -> None:
        self._thread = PerProcessThread("outbox-sweeper", self._run)
        self.passes = 0  # in this process; `make bench` separates this background from requests
        self._election: HostElection | None = None

    def ensure_running(self) -> None:
        if settings.CACHE_OUTBOX_SWEEP_SECONDS > 0:
            self._thread.ensure_started()

    def election(self) -> HostElection:
        if self._election is None:
            self._election = HostElection(election_name())
        return self._election

    def _run(self) -> None:
        interval = settings.CACHE_OUTBOX_SWEEP_SECONDS
        pause = interval
        while True:
            time.sleep(pause)
            pause = interval
            try:
                if self.election().lead():
                    pause = self.lead_once(interval)
                else:
                    self.follow_once(interval)
            except Exception:  # the sweeper must outlive any single failure
                logger.exception("Outbox sweep failed")
            finally:
                close_old_connections()

    def lead_once(self, interval: float) -> float:
        self.passes += 1
        if _watch["fingerprint"] is None:  # a new leader takes over its predecessor's view
            state = self.election().read() or {}
            _watch.update(location=state.get("location"), fingerprint=state.get("fingerprint"))
        if not sweep_once():
            return min(interval, _RETRY_SECONDS)
        self.election().publish(
            {
                "at": time.time(),
                "undelivered": sorted(store.undelivered_shards()),
                "fingerprint": _watch["fingerprint"],
                "location": _watch.get("location"),
            }
        )
        return interval

    def follow_once(self, interval: float) -> None:
        acknowledged = _acknowledged.take()
        try:
            acknowledge(acknowledged)
        except BaseException:
            _acknowledged.give_back(acknowledged)
            raise
        state = self.election().read()
        # A verdict the leader has not renewed for a while is kept as it was, not trusted anew.
        if state and time.time() - float(state.get("at", 0)) < max(5.0, 10 * interval):
            store.set_undelivered(int(shard) for shard in state.get("undelivered", []))


sweeper = _Sweeper()
