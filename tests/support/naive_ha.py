"""The pre-HA behaviour issue 12 describes, for `make faults`' naive runs of its failover and
overload scenarios.

Two of its four traits are settings of today's code (REDIS_WAIT_REPLICAS=0: no WAIT;
CACHE_OUTBOX_RETENTION_SECONDS=0: no replay of the outbox window when the master changes; see
bench/faults_options.py); the other two have no setting, so this module swaps the
functions that differ, process-wide: one breaker for every Redis node (a Cluster shard's
failover opens it for all users), and a timeout counting as a failure at once (no PING to tell
"Redis is slow" from "Redis is down", so the app's own CPU saturation opens the breaker).
The product has no such mode; the scenarios must show the difference, or they prove nothing.
"""

from __future__ import annotations

from typing import Any

from connectors.cache import clients, store
from connectors.cache.breaker import CircuitBreaker
from tests.support.swaps import Swaps


def _one_breaker(shard: int) -> CircuitBreaker:
    return store.breaker


_failure_kind = clients.failure_kind


def _timeouts_are_failures(error: BaseException) -> Any:
    kind = _failure_kind(error)
    return "down" if kind == "slow" else kind


_SWAPS = Swaps(
    [
        (store, "breaker_for", _one_breaker),
        (clients, "failure_kind", _timeouts_are_failures),
    ]
)


def install() -> None:
    """Pre-HA from now on, for the whole process (a benchmark's naive app server)."""
    _SWAPS.install()


def uninstall() -> None:
    _SWAPS.uninstall()
