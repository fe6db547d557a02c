"""Invalidate cached statuses on Postgres NOTIFY: writes this process's ORM never sees.

Raw SQL, `psql`, other services and migrations are covered by the trigger of migration 0003
(`pg_notify('connectors_platformconnection', user_id)`) and by this listener, which deletes that
user's entry and lease on every notification. A disconnected listener misses notifications for
good, so every (re)connect LISTENs, proves it hears (a test NOTIFY from another session), and
replays what the outbox still holds undelivered. See docs/architecture.md ("The listener").
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError
from psycopg import sql

from connectors import metrics
from connectors.cache import outbox
from connectors.cache.invalidation import invalidate_platform_status_cache
from connectors.cache.maintenance import invalidate_all_platform_status
from connectors.errors import CacheUnavailable, InvalidUserId

logger = logging.getLogger("connectors.listener")

CHANNEL = "connectors_platformconnection"  # the trigger in migrations/0003_notify_trigger.py
ALL_USERS = "*"  # the TRUNCATE trigger's payload: every user changed
PROBE = "probe:"  # a listener's test notification (any listener's: others ignore it)

# Django-only keys of DATABASES[...]["OPTIONS"] that libpq would reject.
_DJANGO_ONLY_OPTIONS = frozenset(
    {"pool", "isolation_level", "assume_role", "server_side_binding", "cursor_factory", "context"}
)


class ListenerUnsupported(Exception):
    """The configured database cannot LISTEN (not Postgres, or through a transaction pooler)."""


class ListenerDeaf(ListenerUnsupported):
    """LISTEN succeeded but a test notification never arrived (a pooler in between)."""


_FIX = (
    "Set LISTEN_DATABASE_URL to a connection without a transaction pooler: the database host "
    "itself, or a session-mode pooler (Supabase: the session pooler on port 5432)."
)


def conninfo_from_settings(alias: str = "default") -> dict[str, Any]:
    """psycopg.connect() keyword arguments for LISTEN_DATABASE_URL, or else for Django's
    database `alias` (refused behind a transaction pooler, where LISTEN receives nothing).

    Read at every connect rather than once, so a test that switches to the test database (or a
    deployment that rotates the password in settings) is honoured on the next reconnect.
    """
    db = settings.LISTEN_DATABASE or settings.DATABASES[alias]
    if not str(db.get("ENGINE", "")).endswith("postgresql"):
        raise ListenerUnsupported(
            f"listen_invalidations needs PostgreSQL (LISTEN/NOTIFY); the database uses "
            f"{db.get('ENGINE')!r}. Set DATABASE_URL (or LISTEN_DATABASE_URL)=postgres://... "
            "(on Supabase the session pooler on port 5432 or the direct host: transaction mode "
            "has no LISTEN)."
        )
    if settings.LISTEN_DATABASE is None and settings.DATABASE_TRANSACTION_POOLER:
        raise ListenerUnsupported(
            "DATABASE_URL goes through a transaction pooler (DATABASE_POOLER=transaction, or "
            f"port 6543), which delivers no notifications. {_FIX}"
        )
    params: dict[str, Any] = {
        "dbname": db.get("NAME") or "postgres",
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
        "port": db.get("PORT"),
    }
    params.update(
        {k: v for k, v in (db.get("OPTIONS") or {}).items() if k not in _DJANGO_ONLY_OPTIONS}
    )
    params = {k: v for k, v in params.items() if v not in (None, "")}
    # An idle listener sees no traffic: TCP keepalives are what notice a dead peer (a half-open
    # connection would otherwise wait for notifications that can never arrive).
    params.setdefault("keepalives", 1)
    params.setdefault("keepalives_idle", 10)
    params.setdefault("keepalives_interval", 5)
    params.setdefault("keepalives_count", 3)
    params.setdefault("connect_timeout", 5)
    params.setdefault("application_name", "connectors-listen-invalidations")
    return params


@dataclass
class ListenerStats:
    notifications: int = 0
    invalidations: int = 0  # users whose entry was deleted (one per notification)
    connects: int = 0
    resyncs: int = 0  # outbox replays after a (re)connect or an undelivered invalidation
    epoch_bumps: int = 0  # every status entry dropped (TRUNCATE)
    epoch_keys: int = 0  # keys deleted by epoch bumps
    failures: int = 0  # lost connections and failed connection attempts
    bad_payloads: int = 0


class InvalidationListener:
    """LISTEN on CHANNEL and invalidate each notified user's cached status.

    Run it with run() in its own thread or process; stop() ends it from another thread within
    `poll_seconds`.
    """

    def __init__(
        self,
        *,
        conninfo: Callable[[], dict[str, Any]] = conninfo_from_settings,
        channel: str = CHANNEL,
        poll_seconds: float = 0.5,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        probe_seconds: float = 5.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self.channel = channel
        self.poll_seconds = poll_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.probe_seconds = probe_seconds
        self._log = log or logger.info
        self.stats = ListenerStats()
        self.backend_pid: int | None = None
        self.listening = threading.Event()  # set once LISTEN is proven and the outbox replayed
        self._stop = threading.Event()
        self._state = "starting"
        self._resync_needed = False
        self._epoch_needed = False

    def stop(self) -> None:
        self._stop.set()

    def _change_state(self, state: str, message: str) -> None:
        # One log line per state change: a listener that cannot reach Postgres for an hour
        # logs once, not once per retry.
        if state != self._state:
            self._state = state
            self._log(message)

    def run(
        self, *, max_seconds: float | None = None, max_notifications: int | None = None
    ) -> ListenerStats:
        """Listen until stop(), `max_seconds`, or `max_notifications` handled."""
        # Fail fast on a configuration that can never work (SQLite), before any retry loop.
        self._conninfo()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        backoff = self.backoff_initial
        while not self._finished(deadline, max_notifications):
            try:
                conn = psycopg.connect(autocommit=True, **self._conninfo())
            except psycopg.Error as e:
                self.stats.failures += 1
                metrics.record_db_error("listener")
                self._change_state(
                    "down",
                    f"Cannot connect to Postgres ({_one_line(e)}); "
                    f"retrying with back-off up to {self.backoff_max:g} s",
                )
                self._sleep(backoff, deadline)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            try:
                with conn:
                    self._listen(conn)
                    backoff = self.backoff_initial
                    self._loop(conn, deadline, max_notifications)
            except psycopg.Error as e:
                self._went_away()
                self.stats.failures += 1
                metrics.record_db_error("listener")
                self._change_state(
                    "down", f"Lost the Postgres connection ({_one_line(e)}); reconnecting"
                )
                self._sleep(backoff, deadline)
                backoff = min(backoff * 2, self.backoff_max)
            finally:
                self._went_away()
        self._change_state("stopped", "Stopped listening")
        return self.stats

    def _went_away(self) -> None:
        # Cleared before any back-off sleep: from here on notifications are being lost.
        self.listening.clear()
        self.backend_pid = None

    def _finished(self, deadline: float | None, max_notifications: int | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return max_notifications is not None and self.stats.notifications >= max_notifications

    def _sleep(self, seconds: float, deadline: float | None) -> None:
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        self._stop.wait(seconds)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        # LISTEN first, then replay: a write committed between the two is covered by both, none
        # by neither.
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self._prove_listening(conn)
        self.backend_pid = conn.info.backend_pid
        self.stats.connects += 1
        self._resync_needed = True
        if self._resync():
            self._change_state(
                "listening",
                f"Listening on {self.channel!r} (backend pid {self.backend_pid}); "
                "undelivered invalidations replayed from the outbox",
            )
        self.listening.set()

    def _prove_listening(self, conn: psycopg.Connection[Any]) -> None:
        """Send a test NOTIFY from another session and wait for it: behind a transaction pooler
        LISTEN "succeeds" and nothing ever arrives (pgbouncer drops it, unlinked)."""
        token = f"{PROBE}{secrets.token_hex(8)}"
        with psycopg.connect(autocommit=True, **self._conninfo()) as other:
            other.execute("SELECT pg_notify(%s, %s)", [self.channel, token])
        deadline = time.monotonic() + self.probe_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            for notify in conn.notifies(timeout=remaining, stop_after=1):
                if notify.payload == token:
                    return
                self._handle(notify.payload)  # a real one, arrived meanwhile
        raise ListenerDeaf(
            f"LISTEN on {self.channel!r} succeeded but a test notification did not arrive "
            f"within {self.probe_seconds:g} s: the connection goes through a transaction "
            f"pooler (or one that drops notifications). {_FIX}"
        )

    def _resync(self) -> bool:
        """Replay the outbox (and bump the epoch) if owed; False if that failed (still owed).

        With the outbox, every write committed while this listener was away is either
        delivered (its writer's DEL succeeded) or still undelivered, and so replayed here: no
        need to drop every user's entry (a stampede at scale).
        """
        if self._epoch_needed:
            try:
                deleted = invalidate_all_platform_status()
            except CacheUnavailable as e:
                self._change_state("redis-down", f"Cannot bump the cache epoch ({e}); will retry")
                return False
            self._epoch_needed = False
            metrics.record_invalidations("epoch")
            self.stats.epoch_bumps += 1
            self.stats.epoch_keys += deleted
        if not self._resync_needed:
            return True
        try:
            failed = outbox.replay()
        except DatabaseError as e:
            failed, reason = frozenset([-1]), f"database: {_one_line(e)}"
        else:
            reason = "Redis did not take every invalidation"
        if failed:
            self._change_state("redis-down", f"Cannot replay the outbox ({reason}); will retry")
            return False
        self._resync_needed = False
        self.stats.resyncs += 1
        return True

    def _loop(
        self,
        conn: psycopg.Connection[Any],
        deadline: float | None,
        max_notifications: int | None,
    ) -> None:
        while not self._finished(deadline, max_notifications):
            if (self._resync_needed or self._epoch_needed) and self._resync():
                self._change_state("listening", "Caught up: undelivered invalidations replayed")
            timeout = self.poll_seconds
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
            remaining = None
            if max_notifications is not None:
                remaining = max_notifications - self.stats.notifications
            for notify in conn.notifies(timeout=timeout, stop_after=remaining):
                self._handle(notify.payload)

    def _handle(self, payload: str) -> None:
        if payload.startswith(PROBE):
            return  # another listener proving itself
        self.stats.notifications += 1
        if payload == ALL_USERS:
            self._epoch_needed = True
            self._resync()
            return
        try:
            ok = invalidate_platform_status_cache(payload, source="notify")
        except InvalidUserId:
            self.stats.bad_payloads += 1
            logger.warning("Ignoring notification with payload %r: not a user id", payload[:80])
            return
        if ok:
            self.stats.invalidations += 1
        else:
            # Redis refused this invalidation; the write's outbox row is undelivered, so it is
            # replayed once Redis answers again (pulpcore #2026 is what happens otherwise).
            self._resync_needed = True


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
