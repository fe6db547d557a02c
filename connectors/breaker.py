"""A circuit breaker for Redis, one per process.

django-redis' IGNORE_EXCEPTIONS keeps a request alive through an outage but still makes every
request wait for the socket timeout (django-redis #155: a "2 s" timeout took 16 s), and neither
django-redis nor cacheops ship a breaker (django-redis PR #281 closed, #314 open). This one:

* closed: calls go through; `failure_threshold` consecutive failures open it;
* open: calls are refused at once (no socket wait) for `cooldown` seconds;
* half-open: exactly one caller gets `Permit.PROBE` and must arrange a test of Redis whose
  result nobody uses (the cache layer PINGs from a background thread, so no request ever waits
  on a Redis that may still be dead); meanwhile every call is still refused. The probe's
  success does not close the breaker by itself: `before_close` runs first (the cache layer
  replays invalidations that could not be delivered), and only if that succeeds too does the
  breaker close. Otherwise it opens again. (The probe must not be a real read: a GET answered
  before the replay could return exactly the stale entry the replay is about to delete.)

State changes are logged once each, never per request.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from connectors import metrics

logger = logging.getLogger("connectors.cache")


class Permit(enum.Enum):
    ALLOW = "allow"
    PROBE = "probe"
    DENY = "deny"


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown: float,
        before_close: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.before_close = before_close
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.transitions = 0
        metrics.record_breaker_state(name, State.CLOSED)

    @property
    def state(self) -> State:
        with self._lock:
            if self._state is State.OPEN and self._clock() - self._opened_at >= self.cooldown:
                return State.HALF_OPEN
            return self._state

    def is_open(self) -> bool:
        """Open and still cooling down. Lock-free, for the hot path: a racing state change only
        means one more or one fewer call reaches allow(), which decides under the lock."""
        return self._state is State.OPEN and self._clock() - self._opened_at < self.cooldown

    def allow(self) -> Permit:
        """May a call go to Redis now? In half-open, one caller is made the probe."""
        with self._lock:
            if self._state is State.CLOSED:
                return Permit.ALLOW
            if self._state is State.OPEN:
                if self._clock() - self._opened_at < self.cooldown:
                    return Permit.DENY
                self._set(State.HALF_OPEN, "cool-down over, letting one probe through")
            if self._probe_in_flight:
                return Permit.DENY
            self._probe_in_flight = True
            return Permit.PROBE

    def record_success(self) -> None:
        with self._lock:
            if self._state is State.CLOSED:
                self._failures = 0
                return
            if not self._probe_in_flight:
                return
        # The replay talks to Redis and the database: run it outside the lock, as the probe.
        ready = self.before_close() if self.before_close else True
        with self._lock:
            self._probe_in_flight = False
            if ready:
                self._failures = 0
                self._set(State.CLOSED, "probe succeeded, Redis is back")
            else:
                self._open("probe succeeded but pending invalidations could not be replayed")

    def record_failure(self, error: BaseException | None = None) -> None:
        with self._lock:
            if self._state is State.HALF_OPEN:
                self._probe_in_flight = False
                self._open(f"probe failed ({error})")
                return
            if self._state is State.OPEN:
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(f"{self._failures} consecutive failures, last: {error}")

    def reset(self) -> None:
        with self._lock:
            self._state = State.CLOSED
            self._failures = 0
            self._probe_in_flight = False
            self.transitions = 0
        metrics.record_breaker_state(self.name, State.CLOSED)

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._set(State.OPEN, f"{reason}; skipping Redis for {self.cooldown:g} s")

    def _set(self, state: State, reason: str) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        self.transitions += 1
        metrics.record_breaker_transition(self.name, previous, state)
        log = logger.warning if state is State.OPEN else logger.info
        log("Circuit breaker %s: %s -> %s (%s)", self.name, previous, state, reason)
