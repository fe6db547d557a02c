"""The naive (textbook) cache-aside, switched on process-wide: DEL inside the write's
transaction, plain SET on a miss, no leases and no early refresh. The consistency checks run the
same workload against it to prove they catch what the service guards against.

naive_cache(): on for the duration of the block (every thread), then the service's behaviour
again. install(): on for good, for a whole process (a bench app run with BENCH_CACHE_MODE=naive).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings


@contextmanager
def naive_cache() -> Iterator[None]:
    # override_settings swaps the settings object itself, not a thread-local: every thread
    # sees the naive cache until the block ends.
    with override_settings(CACHE_MODE="naive"):
        yield


def install() -> None:
    settings.CACHE_MODE = "naive"
