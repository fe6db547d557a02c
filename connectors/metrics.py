"""Every Prometheus metric of the service, and the one-line functions that record them.

The cache layer, the outbox, the listener and the breaker call the `record_*` functions; this
module imports nothing of theirs. With several worker processes (granian, gunicorn) each one
writes its samples to files under PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process
mode, chosen by that variable before this module is imported; `manage.py serve` sets it), and a
scrape of /metrics, answered by any one worker, adds up every worker's files. Without it (tests,
runserver) samples stay in this process. The README's "Production" section lists them all.
"""

from __future__ import annotations

import contextvars
import glob
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Not prometheus-client's global REGISTRY: nothing else registers here, and in multi-process
# mode the files, not this registry, are what a scrape reads.
REGISTRY = CollectorRegistry(auto_describe=True)

CACHE_OUTCOMES = ("hit", "miss", "stale", "bypass")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

REQUEST_SECONDS = Histogram(
    "connectors_http_request_duration_seconds",
    "Time to answer a request, by route (URL name), method, status code and cache outcome "
    "(hit, miss, stale, bypass; none when the route reads no cache).",
    ["route", "method", "status", "cache"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
CACHE_READS = Counter(
    "connectors_cache_reads_total",
    "Read-through cache reads by outcome: hit (from Redis), stale (from Redis past its TTL, "
    "the database being down), miss (loaded from the database), bypass (Redis not used: off, "
    "failing, breaker open, undelivered invalidations, or the reader's own uncommitted write).",
    ["outcome"],
    registry=REGISTRY,
)
CACHE_FILLS = Counter(
    "connectors_cache_fills_total",
    "Misses that loaded the database holding the lease, by whether the value was stored "
    "(not_stored: invalidated while loading, or Redis failed).",
    ["result"],
    registry=REGISTRY,
)
LEASE_WAITS = Counter(
    "connectors_cache_lease_waits_total",
    "Reads that found another reader filling the entry and waited for it.",
    registry=REGISTRY,
)
LEASE_WAIT_TIMEOUTS = Counter(
    "connectors_cache_lease_wait_timeouts_total",
    "Lease waits that gave up (CACHE_LEASE_WAIT_MS) and read the database uncached.",
    registry=REGISTRY,
)
INVALIDATIONS = Counter(
    "connectors_cache_invalidations_total",
    "Users whose cached status was invalidated, by source: signal (a model save or delete), "
    "update (QuerySet update / bulk writes), outbox_replay, notify (listen_invalidations), "
    "epoch (the listener's full drop after a reconnect, counted once per drop), admin.",
    ["source"],
    registry=REGISTRY,
)
INVALIDATION_FAILURES = Counter(
    "connectors_cache_invalidation_failures_total",
    "Invalidations Redis did not receive; they wait in the outbox for a replay.",
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "connectors_breaker_state",
    "Circuit breaker state, the worst over live processes: 0 closed, 1 half-open, 2 open.",
    ["name"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "connectors_breaker_transitions_total",
    "Circuit breaker state changes.",
    ["name", "from_state", "to_state"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "connectors_redis_errors_total",
    "Redis calls that failed (refused, timed out, reset).",
    registry=REGISTRY,
)
DB_ERRORS = Counter(
    "connectors_db_errors_total",
    "Database errors, by where they happened: request (answered 503), readyz, outbox "
    "(the sweeper), listener (lost or refused LISTEN connection), metrics (the outbox gauge).",
    ["component"],
    registry=REGISTRY,
)

# The cache outcome of the request being served, for the latency histogram's label.
_request_cache_outcome: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_cache_outcome", default=None
)


# --- Recording (one call each at the place it happens) ----------------------------------------
def record_cache_read(outcome: str) -> None:
    CACHE_READS.labels(outcome).inc()
    _request_cache_outcome.set(outcome)


def record_fill(*, stored: bool) -> None:
    CACHE_FILLS.labels("stored" if stored else "not_stored").inc()


def record_lease_wait() -> None:
    LEASE_WAITS.inc()


def record_lease_wait_timeout() -> None:
    LEASE_WAIT_TIMEOUTS.inc()


def record_invalidations(source: str, count: int = 1) -> None:
    if count:
        INVALIDATIONS.labels(source).inc(count)


def record_invalidation_failure(count: int = 1) -> None:
    INVALIDATION_FAILURES.inc(count)


def record_breaker_state(name: str, state: str) -> None:
    BREAKER_STATE.labels(name).set(BREAKER_STATES[state])


def record_breaker_transition(name: str, previous: str, state: str) -> None:
    BREAKER_TRANSITIONS.labels(name, previous, state).inc()
    BREAKER_STATE.labels(name).set(BREAKER_STATES[state])


def record_redis_error() -> None:
    REDIS_ERRORS.inc()


def record_db_error(component: str) -> None:
    DB_ERRORS.labels(component).inc()


# --- Requests (connectors.middleware) ---------------------------------------------------------
def request_started() -> contextvars.Token[str | None]:
    return _request_cache_outcome.set(None)


def request_finished(
    token: contextvars.Token[str | None], *, route: str, method: str, status: int, seconds: float
) -> None:
    outcome = _request_cache_outcome.get() or "none"
    _request_cache_outcome.reset(token)
    REQUEST_SECONDS.labels(route, method, str(status), outcome).observe(seconds)


# --- Exposition -------------------------------------------------------------------------------
OutboxReader = Callable[[], tuple[int, float | None]]


class _OutboxCollector:
    """Read at scrape time from the database: the outbox is shared by every process."""

    def __init__(self, read: OutboxReader, database_error: type[Exception]) -> None:
        self._read = read
        self._database_error = database_error

    def collect(self) -> Iterator[Metric]:
        try:
            pending, oldest_age = self._read()
        except self._database_error:
            record_db_error("metrics")
            return
        yield GaugeMetricFamily(
            "connectors_outbox_pending",
            "Invalidations whose delivery to Redis is not confirmed yet (should stay near 0).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "connectors_outbox_oldest_age_seconds",
            "Age of the oldest pending invalidation (0 when none).",
            value=oldest_age or 0.0,
        )


class _Forward:
    """This process's own samples, when there are no per-process files to add up."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def forget_dead_gauges(path: str) -> None:
    """Drop the "live" gauges of processes that have died (a respawned or stopped worker), as
    a server's child-exit hook would: granian has none, so each scrape does it."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _PID_IN_NAME.search(name)
        if match and not _pid_alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), path)


def prepare_multiprocess_dir(path: str) -> None:
    """Before the server starts: create the directory and delete what processes no longer
    alive left there (a previous run), keeping the files of live ones (a running listener)."""
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        match = _PID_IN_NAME.search(name)
        if match is None or not _pid_alive(int(match.group(1))):
            os.remove(name)


def exposition(
    *, accept: str | None, outbox: OutboxReader | None, database_error: type[Exception]
) -> tuple[bytes, str]:
    """The scrape body and its content type, for every process's samples."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        forget_dead_gauges(path)
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Forward())
    if outbox is not None:
        registry.register(_OutboxCollector(outbox, database_error))
    encoder, content_type = choose_encoder(accept or "")
    body: Any = encoder(registry)
    return bytes(body), content_type
