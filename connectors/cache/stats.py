"""Hit/miss counters shared across processes without costing a hit a second round trip.

Each process counts in memory and a daemon thread adds its counts to one Redis hash every second
(statsd-style), so the figures are up to a second behind, deliberately.
"""

from __future__ import annotations

import threading
import time

import redis

from connectors.cache import store
from connectors.cache.keys import POPULATED_KEY, STATS_KEY
from connectors.cache.threads import PerProcessThread
from connectors.errors import CacheKeyUnreadable, CacheUnavailable

# hits and misses of the read-through; rejected: stored values that failed the entry checks.
FIELDS = ("hits", "misses", "rejected")


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = dict.fromkeys(FIELDS, 0)
        self._flusher = PerProcessThread("cache-stats", self._run)

    def record(self, field: str) -> None:
        with self._lock:
            self._pending[field] += 1
        self._flusher.ensure_started()

    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, dict.fromkeys(FIELDS, 0)
        if not any(pending.values()) or not store.enabled():
            return

        def increment(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for field, count in pending.items():
                if count:
                    pipe.hincrby(store.full_key(STATS_KEY), field, count)
            # Traffic means Redis holds data now: (re)mark it, in the same round trip.
            pipe.set(store.full_key(POPULATED_KEY), b"1")
            pipe.execute()

        try:
            # A background thread must not steer the breaker (nor become its probe): it keeps
            # its counts while Redis is being skipped, and its failures are not the requests'.
            if not store.breaker_closed():
                raise CacheUnavailable("breaker not closed")
            try:
                store.call(increment, bypass_breaker=True)
            except CacheKeyUnreadable:
                # Not a hash of whole numbers (planted): statistics are not worth failing
                # over, so it is replaced.
                store.call(lambda r: r.delete(store.full_key(STATS_KEY)), bypass_breaker=True)
                store.call(increment, bypass_breaker=True)
        except CacheUnavailable:
            with self._lock:
                for field, count in pending.items():
                    self._pending[field] += count


counters = Counters()
