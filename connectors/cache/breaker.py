"""A circuit breaker: skip a failing dependency at once instead of waiting out its timeout.

Closed: calls go through; `failure_threshold` consecutive failures open it, and as many
consecutive timeouts ask the caller to confirm them first (a slow dependency is not a dead one).
Open: calls are refused for `cooldown` seconds. Half-open: exactly one caller gets
`Permit.PROBE` and must test the dependency off the request path, then report with
probe_succeeded() or probe_failed(); every other call is still refused meanwhile. State changes
are logged once each. Why, and why the probe is not a real read: docs/architecture.md
("Outages").
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._timeouts = 0
        self._confirming = 0  # the confirmation round in flight, if any
        self._rounds = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._tripped_during_probe = False
        self.transitions = 0
        metrics.record_breaker_state(name, State.CLOSED)

    @property
    def state(self) -> State:
        with self._lock:
            if self._state is State.OPEN and self._clock() - self._opened_at >= self.cooldown:
                return State.HALF_OPEN
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def consecutive_timeouts(self) -> int:
        """Timeouts since the last success (a confirmation round in flight counts as many)."""
        return max(self._timeouts, self.failure_threshold if self._confirming else 0)

    def is_open(self) -> bool:
        """Open and still cooling down. Lock-free, for the hot path: a racing state change only
        means one more or one fewer call reaches allow(), which decides under the lock."""
        return self._state is State.OPEN and self._clock() - self._opened_at < self.cooldown

    def is_closed(self) -> bool:
        """Closed (lock-free, as is_open()): allow() lets every call through."""
        return self._state is State.CLOSED

    def allow(self) -> Permit:
        """May a call go through now? In half-open, one caller is made the probe."""
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
        """A call that allow() let through succeeded (closed state only: a probe reports with
        probe_succeeded())."""
        if self._failures or self._timeouts:
            with self._lock:
                if self._state is State.CLOSED:
                    self._failures = self._timeouts = 0

    def record_failure(self, error: BaseException | None = None) -> None:
        with self._lock:
            if self._state is not State.CLOSED:
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(f"{self._failures} consecutive failures, last: {error}")

    def record_timeout(self) -> int:
        """A call timed out. Non-zero: this caller must now confirm the timeouts off the request
        path and report with timeouts_confirmed() or timeouts_refuted(), passing that number."""
        with self._lock:
            if self._state is not State.CLOSED or self._confirming:
                return 0
            self._timeouts += 1
            if self._timeouts < self.failure_threshold:
                return 0
            self._rounds += 1
            self._confirming = self._rounds
            return self._rounds

    def timeouts_confirmed(self, round_: int, reason: object) -> None:
        with self._lock:
            if round_ != self._confirming:
                return  # reset meanwhile
            self._confirming = self._timeouts = 0
            if self._state is State.CLOSED:
                self._open(f"{self.failure_threshold} timeouts, confirmed: {reason}")

    def timeouts_refuted(self, round_: int) -> None:
        with self._lock:
            if round_ == self._confirming:
                self._confirming = self._timeouts = 0

    def trip(self, reason: str) -> None:
        """Open now, whatever the count (the caller knows the dependency cannot be trusted
        until a probe has run). A probe already in flight may have checked too early: its
        success then opens the breaker again instead of closing it."""
        with self._lock:
            if self._state is State.CLOSED:
                self._open(reason)
            elif self._probe_in_flight:
                self._tripped_during_probe = True

    def probe_succeeded(self) -> None:
        with self._lock:
            self._probe_in_flight = False
            self._failures = 0
            if self._tripped_during_probe:
                self._tripped_during_probe = False
                self._open("tripped while the probe ran")
                return
            self._set(State.CLOSED, "probe succeeded")

    def probe_failed(self, reason: object) -> None:
        with self._lock:
            self._probe_in_flight = False
            self._tripped_during_probe = False
            self._open(f"probe failed ({reason})")

    def reset(self) -> None:
        with self._lock:
            self._state = State.CLOSED
            self._failures = self._timeouts = 0
            self._probe_in_flight = self._tripped_during_probe = False
            self._confirming = 0
            self.transitions = 0
        metrics.record_breaker_state(self.name, State.CLOSED)

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._set(State.OPEN, f"{reason}; skipping {self.name} for {self.cooldown:g} s")

    def _set(self, state: State, reason: str) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        self.transitions += 1
        metrics.record_breaker_transition(self.name, previous, state)
        log = logger.warning if state is State.OPEN else logger.info
        log("Circuit breaker %s: %s -> %s (%s)", self.name, previous, state, reason)
