"""The textbook cache-aside the consistency checks compare the service against.

Invalidation runs inside the writing transaction (a concurrent reader re-caches the pre-commit
row), no read bypasses the cache for keys the open transaction wrote, XFetch is off, and a miss
reads the database and then SETs plainly (the "stale set": a late fill puts back a row an
invalidation already removed). The product has no such mode: this module swaps the functions
that differ, process-wide, and the checks must then see violations (or they prove nothing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from connectors import metrics
from connectors.cache import eviction, invalidation, readthrough, store
from connectors.cache.entry import CachedRead, Entry, encode
from connectors.cache.keys import Slot
from connectors.cache.readthrough import Loader, ttl_ms
from connectors.cache.stats import counters
from connectors.errors import CacheUnavailable
from tests.support.swaps import Swaps


def _invalidate_inside_the_transaction(slot: Slot, using: str | None, source: str) -> None:
    eviction.evict(slot)


def _never_dirty(slot: Slot, *, using: str = "default") -> bool:
    return False


def _never_early(entry: Entry) -> bool:
    return False


def _plain_set_miss(slot: Slot, key: str, loader: Loader, started: float) -> CachedRead:
    db_started = time.perf_counter()
    result = CachedRead.from_data(loader())
    payload = encode(slot, key, result.body, result.etag, time.perf_counter() - db_started)
    with contextlib.suppress(CacheUnavailable):
        store.call(lambda r: r.set(key, payload, px=ttl_ms(slot)))
    counters.record("misses")
    metrics.record_cache_read("miss")
    return result


_SWAPS = Swaps(
    [
        (invalidation, "schedule", _invalidate_inside_the_transaction),
        (invalidation, "is_dirty", _never_dirty),
        (readthrough, "_should_refresh_early", _never_early),
        (readthrough, "_miss", _plain_set_miss),
    ]
)


def install() -> None:
    """Naive from now on, for the whole process (a benchmark's naive app server)."""
    _SWAPS.install()


def uninstall() -> None:
    _SWAPS.uninstall()


@contextlib.contextmanager
def naive_cache() -> Iterator[None]:
    """Naive inside the block, for every thread of the process; the service's after."""
    install()
    try:
        yield
    finally:
        uninstall()
