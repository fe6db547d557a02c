"""Workloads that race readers against writers on the real database and Redis, through
connectors.cache: the register workload (its history judged by tests/support/history.py), a cold
burst on one uncached user, and a hot key through its expiries.

Used by tests/test_consistency.py (short runs) and bench/consistency.py (long runs); the only
instrumentation is injected delays that widen the race windows the cache must close.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.test import override_settings

from connectors import cache, selectors
from connectors.models import PlatformConnection
from connectors.providers import PROVIDERS
from tests.support.history import History, ReadRecord, Violation, WriteRecord, check
from tests.support.naive import naive_cache

TABLE = PlatformConnection._meta.db_table

# The write every writer thread makes: one row, its version assigned by the trigger. Raw SQL
# on purpose: the checker must not depend on the ORM paths it is there to check.
_UPDATE_SQL = (
    f"UPDATE {TABLE} SET last_sync_status = %s "  # noqa: S608 - a constant table name
    "WHERE user_id = %s AND provider = %s RETURNING version"
)
_SYNC_STATUSES = ("pending", "running", "success", "failed")


# --- Workload ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    operations: int = 3000  # reads + writes, over all threads
    readers: int = 12
    writers: int = 4
    users: int = 200
    providers_per_user: int = 3
    zipf_s: float = 1.1  # skew of the user choice: weight of the i-th user is 1 / i**s
    write_delay_ms: float = 20.0  # uniform 0..this, between the UPDATE and COMMIT
    fill_delay_ms: float = 20.0  # uniform 0..this, between the DB read and the cache SET
    max_seconds: float = 600.0  # a hard stop, whatever `operations` says
    seed: int = 1


@dataclass
class Report:
    mode: str
    reads: int
    writes: int
    seconds: float
    violations: list[Violation]
    fills: int  # loader calls (DB reads made by cache misses)

    @property
    def operations(self) -> int:
        return self.reads + self.writes

    @property
    def max_staleness_ms(self) -> float:
        return max((v.staleness_ms for v in self.violations), default=0.0)

    def summary(self) -> str:
        return (
            f"{self.mode}: {self.operations:,} ops ({self.reads:,} reads, {self.writes:,} "
            f"writes, {self.fills:,} fills) in {self.seconds:.1f} s, "
            f"{len(self.violations):,} violations, max staleness {self.max_staleness_ms:.1f} ms"
        )


def providers_for(config: WorkloadConfig) -> list[str]:
    return list(PROVIDERS)[: config.providers_per_user]


def seed_users(count: int, providers: Sequence[str]) -> list[str]:
    """`count` new users with a row per provider; their ids, most popular first."""
    users = [str(uuid.uuid4()) for _ in range(count)]
    PlatformConnection.objects.bulk_create(
        [PlatformConnection(user_id=u, provider=p) for u in users for p in providers]
    )
    return users


def zipf_weights(count: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(count)))


@contextmanager
def quiet_cache_logs() -> Iterator[None]:
    """Per-hit INFO lines would cost more than the hits and drown the report."""
    log = logging.getLogger("connectors.cache")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _thread_main(body: Callable[[], None], errors: list[BaseException]) -> None:
    try:
        body()
    except BaseException as e:  # reported by the caller; a silent thread death hides bugs
        errors.append(e)
    finally:
        # Each thread has its own Django connection: close it or the test database cannot be
        # dropped and the bench leaks backends.
        connection.close()


def run_threads(bodies: Sequence[Callable[[], None]]) -> None:
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_thread_main, args=(b, errors), name=f"consistency-{i}")
        for i, b in enumerate(bodies)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} worker thread(s) failed") from errors[0]


def run_workload(config: WorkloadConfig, users: Sequence[str], mode: str) -> Report:
    """Readers and writers over `users` (seeded rows), with the service's cache or the naive
    one (tests/support/naive.py); the checked history."""
    if mode not in ("service", "naive"):
        raise ValueError(f"unknown cache mode {mode!r}")
    providers = providers_for(config)
    cum_weights = zipf_weights(len(users), config.zipf_s)
    history = History()
    counter = itertools.count()  # next() is atomic: the shared operation budget
    fills = itertools.count()
    deadline = time.perf_counter() + config.max_seconds

    def budget_left() -> bool:
        return next(counter) < config.operations and time.perf_counter() < deadline

    def writer(n: int) -> None:
        rng = random.Random(config.seed * 1000 + n)
        log = history.writer_log()
        while budget_left():
            user = rng.choices(users, cum_weights=cum_weights)[0]
            provider = rng.choice(providers)
            invoked = time.perf_counter()
            with transaction.atomic():
                with connection.cursor() as cur:
                    cur.execute(_UPDATE_SQL, [rng.choice(_SYNC_STATUSES), user, provider])
                    row = cur.fetchone()
                # Where the post_save receiver and the QuerySet overrides call it: inside the
                # transaction. Service mode defers the DEL to on_commit; naive mode DELs now.
                cache.invalidate_platform_status_on_commit(user)
                time.sleep(rng.uniform(0, config.write_delay_ms) / 1000)
            returned = time.perf_counter()
            assert row is not None, f"no row for {user}/{provider}: seed the users first"
            log.append(WriteRecord(user, provider, invoked, returned, int(row[0])))

    def reader(n: int) -> None:
        rng = random.Random(config.seed * 1000 + 500 + n)
        log = history.reader_log()
        while budget_left():
            user = rng.choices(users, cum_weights=cum_weights)[0]

            def loader(uid: str = user) -> dict[str, Any]:
                next(fills)
                data = selectors.platform_status_from_db(user_id=uid)
                # The stale-set window: the row was read, the SET has not happened yet.
                time.sleep(rng.uniform(0, config.fill_delay_ms) / 1000)
                return data

            invoked = time.perf_counter()
            result = cache.read_platform_status(user, loader)
            returned = time.perf_counter()
            platforms = result.data["platforms"]
            log.append(
                ReadRecord(
                    user,
                    invoked,
                    returned,
                    tuple((p, int(platforms[p]["version"])) for p in providers),
                )
            )

    bodies: list[Callable[[], None]] = [functools.partial(writer, n) for n in range(config.writers)]
    bodies += [functools.partial(reader, n) for n in range(config.readers)]
    cache.invalidate_all_platform_status()  # every mode starts cold
    started = time.perf_counter()
    with naive_cache() if mode == "naive" else nullcontext(), quiet_cache_logs():
        run_threads(bodies)
    seconds = time.perf_counter() - started
    writes, reads = history.all_writes(), history.all_reads()
    return Report(
        mode=mode,
        reads=len(reads),
        writes=len(writes),
        seconds=seconds,
        violations=check(writes, reads),
        fills=next(fills),
    )


# --- Cold burst ----------------------------------------------------------------------------
@dataclass
class BurstResult:
    queries: int  # SELECTs against the status table, over all threads
    answers: int  # readers that returned the expected document
    readers: int
    max_latency_ms: float
    errors: int  # readers that raised (the deliberately failing filler, if any)


class QueryCounter:
    """A Django execute_wrapper counting statements that touch the status table."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        if TABLE in sql and sql.lstrip().upper().startswith("SELECT"):
            with self._lock:
                self.count += 1
        return execute(sql, params, many, context)


def cold_burst(
    user: str,
    *,
    readers: int = 100,
    dead_filler: bool = False,
    failing_filler: bool = False,
    fill_delay_ms: float = 5.0,
) -> BurstResult:
    """`readers` threads released together on one uncached user.

    dead_filler: a filler takes the lease, reads the database and dies without filling (its
    lease must expire before anyone else may fill). failing_filler: the first reader's loader
    raises after its query (its lease is released at once). Either way the query count includes
    the failed filler's own query.
    """
    expected = selectors.platform_status_from_db(user_id=user)
    counter = QueryCounter()
    barrier = threading.Barrier(readers + (1 if dead_filler else 0))
    answers = itertools.count()
    errors = itertools.count()
    latencies: list[float] = []
    first_loader = threading.Lock()  # taken by the one loader that must fail

    def loader() -> dict[str, Any]:
        data = selectors.platform_status_from_db(user_id=user)
        time.sleep(fill_delay_ms / 1000)  # a realistically slow query keeps the lease busy
        if failing_filler and first_loader.acquire(blocking=False):
            raise RuntimeError("filler crashed mid-fill (injected)")
        return data

    def read() -> None:
        with connection.execute_wrapper(counter):
            barrier.wait()
            started = time.perf_counter()
            try:
                result = cache.read_platform_status(user, loader)
            except RuntimeError:
                next(errors)
                return
            latencies.append(time.perf_counter() - started)
            if result.data == expected:
                next(answers)

    def dead() -> None:
        # Lease first, as a real filler would, then the query, then "the process dies".
        token = cache.acquire_platform_status_lease(user)
        assert token is not None, "the user was expected to be uncached"
        with connection.execute_wrapper(counter):
            selectors.platform_status_from_db(user_id=user)
        barrier.wait()

    bodies: list[Callable[[], None]] = [read] * readers
    if dead_filler:
        bodies.append(dead)
    cache.invalidate_platform_status_cache(user)
    with quiet_cache_logs():
        run_threads(bodies)
    return BurstResult(
        queries=counter.count,
        answers=next(answers),
        readers=readers,
        max_latency_ms=max(latencies, default=0.0) * 1000,
        errors=next(errors),
    )


# --- Hot key -------------------------------------------------------------------------------
@dataclass
class HotKeyResult:
    fills: int
    windows: int
    seconds: float
    reads: int

    @property
    def fills_per_window(self) -> float:
        return self.fills / self.windows if self.windows else math.inf


def hot_key(
    user: str,
    *,
    seconds: float,
    ttl_seconds: float,
    readers: int = 4,
    fill_delay_ms: float = 2.0,
    pause_ms: float = 0.5,
) -> HotKeyResult:
    """Readers hammer one user for `seconds` with the status TTL set to `ttl_seconds`.

    A perfect cache fills once at the start and once per expiry: 1 + floor(seconds / ttl)
    fills, one per TTL window started. XFetch refreshes a few fill-times before expiry, so it
    may start slightly more windows; a stampeding cache fills many times per expiry.
    """
    fills = itertools.count()
    reads = itertools.count()
    scale = ttl_seconds / cache.TTL_SECONDS["platform_status"]
    stop_at = 0.0

    def loader() -> dict[str, Any]:
        next(fills)
        data = selectors.platform_status_from_db(user_id=user)
        time.sleep(fill_delay_ms / 1000)
        return data

    def read() -> None:
        while time.perf_counter() < stop_at:
            cache.read_platform_status(user, loader)
            next(reads)
            time.sleep(pause_ms / 1000)  # steady load, not a busy loop starving the filler

    cache.invalidate_platform_status_cache(user)
    with override_settings(CACHE_TTL_SCALE=scale), quiet_cache_logs():
        started = time.perf_counter()
        stop_at = started + seconds
        run_threads([read] * readers)
    return HotKeyResult(
        fills=next(fills),
        windows=1 + math.floor(seconds / ttl_seconds),
        seconds=time.perf_counter() - started,
        reads=next(reads),
    )
