"""The freshness checker: a history of timed reads and writes, and the reads it must reject.

Every (user, provider) row is a register whose versions the database assigns (migration 0002:
one sequence, taken under the row lock, so a row's versions grow in commit order). A write spans
invocation to the exit of its `atomic()` block (after COMMIT and its on_commit invalidation); a
read spans invocation to return, with the version it saw per provider. A read violates freshness
when it was invoked after a write of the same register had returned and still saw a smaller
version: once a write has returned, no later read may serve anything older. Reads that overlap
a write may see either version. Pure Python: no database, no cache.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WriteRecord:
    user: str
    provider: str
    invoked: float  # time.perf_counter(): one monotonic clock shared by every thread
    returned: float
    version: int


@dataclass(frozen=True, slots=True)
class ReadRecord:
    user: str
    invoked: float
    returned: float
    versions: tuple[tuple[str, int], ...]  # (provider, version seen)


@dataclass(frozen=True, slots=True)
class Violation:
    read: ReadRecord
    provider: str
    seen: int
    newer: int  # the highest version whose write had returned before the read began
    staleness_ms: float  # read.invoked minus the return of the first write it should have seen


@dataclass
class History:
    """Per-thread record lists (no lock on the hot path), merged when the run is over."""

    writes: list[list[WriteRecord]] = field(default_factory=list)
    reads: list[list[ReadRecord]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def writer_log(self) -> list[WriteRecord]:
        log: list[WriteRecord] = []
        with self._lock:
            self.writes.append(log)
        return log

    def reader_log(self) -> list[ReadRecord]:
        log: list[ReadRecord] = []
        with self._lock:
            self.reads.append(log)
        return log

    def all_writes(self) -> list[WriteRecord]:
        return list(itertools.chain.from_iterable(self.writes))

    def all_reads(self) -> list[ReadRecord]:
        return list(itertools.chain.from_iterable(self.reads))


def check(writes: Sequence[WriteRecord], reads: Sequence[ReadRecord]) -> list[Violation]:
    """Every freshness violation in a history (see the module docstring)."""
    # Per register: writes ordered by return time, with the running maximum of their versions.
    # A read invoked at t must show at least the running maximum over writes returned before t;
    # the first write whose running maximum exceeds what it saw is the one it missed first.
    by_key: dict[tuple[str, str], list[WriteRecord]] = defaultdict(list)
    for w in writes:
        by_key[(w.user, w.provider)].append(w)
    index: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for key, ws in by_key.items():
        ws.sort(key=lambda w: w.returned)
        returned = [w.returned for w in ws]
        running = list(itertools.accumulate((w.version for w in ws), max))
        index[key] = (returned, running)

    violations: list[Violation] = []
    for r in reads:
        for provider, seen in r.versions:
            entry = index.get((r.user, provider))
            if entry is None:
                continue
            returned, running = entry
            done = bisect.bisect_left(returned, r.invoked)  # writes returned strictly before
            if done == 0 or running[done - 1] <= seen:
                continue
            first_missed = bisect.bisect_right(running, seen, 0, done)
            violations.append(
                Violation(
                    read=r,
                    provider=provider,
                    seen=seen,
                    newer=running[done - 1],
                    staleness_ms=(r.invoked - returned[first_missed]) * 1000,
                )
            )
    return violations
