"""`make faults`' analysis of one run: what Redis held when (from MONITOR), every read checked
against the writes that returned before it started, per phase; recovery of the hit ratio."""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.faults_options import SCENARIOS, Options
from bench.harness.stats import pct

# --- What Redis held -------------------------------------------------------------------------
MONITOR_LINE = re.compile(r"^(\d+\.\d+) \[\d+ [^\]]*\] (.*)$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Commands that leave a key in place ("SET" also from inside the service's Lua scripts, which
# MONITOR lists as "lua") and commands that remove it. Anything else that names a status key
# and is not a read is counted as unknown (reported; the analysis then fails loudly).
KEY_READS = {
    "GET",
    "GETRANGE",
    "EXISTS",
    "TTL",
    "PTTL",
    "TYPE",
    "STRLEN",
    "EVALSHA",
    "EVAL",
    "EVALSHA_RO",
}
KEY_SETS = {"SET", "SETEX", "PSETEX", "SETNX", "GETSET"}
KEY_DELETES = {"DEL", "UNLINK", "GETDEL"}


@dataclass
class KeyTimeline:
    """When each user's status entry was in Redis, from the MONITOR stream of scenario c.

    Exact where the write bookkeeping can only guess: a write's DEL may come from a request
    that failed after all, from the outbox sweeper once the database is back, or from a write
    the load generator could not read back. MONITOR shows every command Redis executed with
    its time, including those run inside Lua scripts (the service fills entries from one).
    """

    changes: dict[int, list[tuple[float, bool]]]  # user -> (monotonic time, present after)
    sets: int = 0
    deletes: int = 0
    unknown: Counter[str] = field(default_factory=Counter)

    @classmethod
    def parse(
        cls,
        path: Path,
        *,
        prefix: str,
        status_key: str,
        users: list[str],
        clock_offset: float,
    ) -> KeyTimeline:
        before, after = status_key.split("{user}")
        index = {u: i for i, u in enumerate(users)}
        # django-redis stores "<prefix>:<version>:<key>"; the lease key has a suffix, so a
        # full match on the value key leaves it out.
        key_re = re.compile(
            rf"{re.escape(prefix)}:[^:]*:{re.escape(before)}({UUIDS.pattern}){re.escape(after)}"
        )
        timeline = cls(defaultdict(list))
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = MONITOR_LINE.match(line)
                if not m:
                    continue
                words = QUOTED.findall(m.group(2))
                if not words:
                    continue
                command = words[0].upper()
                if command in ("FLUSHDB", "FLUSHALL"):
                    t = float(m.group(1)) - clock_offset
                    for user in timeline.changes:
                        timeline.changes[user].append((t, False))
                    continue
                named = [
                    index[k.group(1)]
                    for w in words[1:]
                    if (k := key_re.fullmatch(w)) and k.group(1) in index
                ]
                if not named or command in KEY_READS:
                    continue
                t = float(m.group(1)) - clock_offset
                if command in KEY_SETS:
                    options = {w.upper() for w in words[3:]}
                    if "XX" in options:  # only overwrites: presence unchanged
                        continue
                    timeline.sets += 1
                    timeline.changes[named[0]].append((t, True))
                elif command in KEY_DELETES:
                    timeline.deletes += 1
                    for user in named:
                        timeline.changes[user].append((t, False))
                else:
                    timeline.unknown[command] += 1
        return timeline

    def present_throughout(self, user: int, start: float, end: float) -> bool:
        """The user's entry was in Redis from `start` to `end` (entries outlive a run: their
        TTL is minutes), so a read in between had it to answer from."""
        changes = self.changes.get(user, [])
        i = bisect.bisect_right(changes, (start, True))
        if i == 0 or not changes[i - 1][1]:
            return False
        return all(present for t, present in changes[i:] if t <= end)

    def present_during(self, user: int, start: float, end: float) -> bool:
        """The entry was in Redis at some moment between `start` and `end`."""
        changes = self.changes.get(user, [])
        i = bisect.bisect_right(changes, (start, True))
        if i > 0 and changes[i - 1][1]:
            return True
        return any(present for t, present in changes[i:] if t <= end)


@dataclass
class Marks:
    """When the fault's steps happened (time.monotonic()), and what the analysis needs."""

    fault_start: float = 0.0
    recovered: float = 0.0
    promoted: float | None = None  # the replica answers ROLE as a master
    switched: float | None = None  # a sentinel names the new master (+switch-master)
    resumed: float | None = None
    demoted: float | None = None
    healthy_users: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- One run --------------------------------------------------------------------------------
@dataclass
class Run:
    scenario: str  # "baseline" | "a" | "b" | "c"
    config: str  # "db-only" | "service" | "naive"
    t0: float
    end: float
    fault_start: float | None
    recovered: float | None
    data: dict[str, Any]
    log_text: str
    warm_note: str = ""
    other_cpu: float = 0.0
    # Scenario c: per user, when their status entry was in Redis (see KeyTimeline).
    keys: KeyTimeline | None = None
    # Scenarios d-g: when the fault's steps happened; d-f: the users read once after the run
    # (every user written to) and those whose answer was older than the database (lost).
    marks: Marks | None = None
    checked: int = 0
    lost: list[int] | None = None

    @property
    def title(self) -> str:
        return "DB-only baseline" if self.scenario == "baseline" else SCENARIOS[self.scenario]


# --- Analysis -------------------------------------------------------------------------------
Read = tuple[int, float, float, int, int, int, "list[int] | None"]


@dataclass
class PhaseStats:
    name: str
    seconds: float
    reads: int = 0
    writes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    skipped: int = 0
    read_p50: float = float("nan")
    read_p99: float = float("nan")
    write_p99: float = float("nan")
    hits: int = 0
    served: int = 0
    stale_api: int = 0
    stale_ext: int = 0
    stale_flag: int = 0
    r503_uncached: int = 0
    r503_cached: int = 0
    w503: int = 0
    r500: int = 0

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.served if self.served else None

    @property
    def non_2xx(self) -> str:
        bad = {s: n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}
        names = {0: "conn-err", -200: "bad-body"}
        return ", ".join(f"{names.get(s, s)}:{n}" for s, n in bad.items()) or "0"


class WriteIndex:
    """Per user, writes sorted by the time from which reads must show them."""

    def __init__(self, items: Iterable[tuple[int, float, list[int]]]) -> None:
        by_user: dict[int, list[tuple[float, list[int]]]] = defaultdict(list)
        for user, visible_from, versions in items:
            by_user[user].append((visible_from, versions))
        self.times: dict[int, list[float]] = {}
        self.versions: dict[int, list[list[int]]] = {}
        for user, rows in by_user.items():
            rows.sort(key=lambda r: r[0])
            self.times[user] = [r[0] for r in rows]
            self.versions[user] = [r[1] for r in rows]

    def latest_before(self, user: int, t: float) -> list[int] | None:
        times = self.times.get(user)
        if not times:
            return None
        i = bisect.bisect_left(times, t) - 1
        return self.versions[user][i] if i >= 0 else None

    def last_time_before(self, user: int, t: float) -> float | None:
        times = self.times.get(user, [])
        i = bisect.bisect_left(times, t) - 1
        return times[i] if i >= 0 else None

    def any_between(self, user: int, lo: float, hi: float) -> bool:
        times = self.times.get(user, [])
        i = bisect.bisect_right(times, lo)
        return i < len(times) and times[i] < hi


def older(read: list[int], write: list[int] | None) -> bool:
    return write is not None and any(r < w for r, w in zip(read, write, strict=True))


@dataclass
class HaFigures:
    """Issue 12's figures of one run of scenarios d-g."""

    stale_late: int  # stale reads that started more than 1 s after the promotion (d, e)
    r5xx: int  # responses with a 5xx status, reads and writes, the whole run
    stale: int  # stale reads that started after the fault began
    healthy_hits: int  # f: reads of users on the other masters during the failover
    healthy_served: int
    fault_hits: int  # reads during the fault (g: while the hogs ran)
    fault_served: int
    lost: int | None  # d-f: written users read older than the database after the run
    checked: int
    # The first stale reads after the fault: (user, start and end of the read relative to the
    # fault, the last write to that user that returned before it, relative to the fault).
    examples: list[tuple[int, float, float, float | None]] = field(default_factory=list)

    @property
    def healthy_hit_ratio(self) -> float | None:
        return self.healthy_hits / self.healthy_served if self.healthy_served else None

    @property
    def fault_hit_ratio(self) -> float | None:
        return self.fault_hits / self.fault_served if self.fault_served else None


@dataclass
class Analysis:
    run: Run
    phases: list[PhaseStats]
    seconds_to_target: float | None
    buckets: list[tuple[int, int, float | None]]
    breaker_opens: int
    undelivered_warnings: int
    errors_logged: int
    first_traceback: str
    # Hit ratio in the first 10 s after recovery over reads of users already read since the
    # recovery: without the misses an empty cache cannot avoid, what is left is the service's.
    repeat_hit_ratio: float | None
    messages: Counter[str]
    # MONITOR self-check: (hits whose entry the key timeline shows present, all hits).
    key_check: tuple[int, int] | None = None
    ha: HaFigures | None = None


# Django's "<time> LEVEL logger message" and gunicorn's "[time] [pid] [LEVEL] message".
LOG_LINE = re.compile(r"((?:WARNING|ERROR|CRITICAL) \S+ .*|\[(?:WARNING|ERROR|CRITICAL)\] .*)$")
UUIDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def analyse(run: Run, opts: Options, info: dict[str, Any]) -> Analysis:
    d = run.data
    reads: list[Read] = [tuple(r) for r in d["reads"]]
    writes = d["writes"]
    ext = d["external"]
    # The promise (README, "Consistency guarantees"): a read that starts after a write returned
    # shows that write or a later one. API writes are checked from the moment they returned.
    api_index = WriteIndex((u, end, v) for u, _k, _s, end, st, v in writes if st == 200 and v)
    # Writes from outside the app are only promised "within about grace + interval seconds"
    # (connectors/cache/outbox.py): they are checked from commit + grace + sweep + 1 s of slack.
    allowance = float(info["grace"]) + float(info["sweep"]) + 1.0
    ext_index = WriteIndex((u, end + allowance, v) for u, end, v in ext if v)
    # Writes that may have removed a user's entry, keyed by the earliest moment they could
    # have: an API write from when it was sent (it commits before it returns), an external one
    # from its commit (the sweeper deletes the entry up to `allowance` later: see below).
    may_invalidate = WriteIndex(
        [(u, start, v or []) for u, _k, start, _e, st, v in writes if st in (0, 200)]
        + [(u, end, v or []) for u, end, v in ext]
    )
    last_ok: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for user, _start, end, status, cached, _stale, _v in sorted(reads, key=lambda r: r[2]):
        if status == 200:
            last_ok[user].append((end, cached))

    if run.fault_start is None:
        bounds = [("baseline", run.t0, run.end + 3600)]
    else:
        assert run.recovered is not None
        bounds = [
            ("before", run.t0, run.fault_start),
            ("during", run.fault_start, run.recovered),
            ("after", run.recovered, run.end + 3600),
        ]
    phases = []
    for name, lo, hi in bounds:
        ps = PhaseStats(name, min(hi, run.end) - lo)
        in_phase = [r for r in reads if lo <= r[1] < hi]
        ps.reads = len(in_phase)
        lat = [(r[2] - r[1]) * 1000 for r in in_phase]
        ps.read_p50, ps.read_p99 = pct(lat, 0.5), pct(lat, 0.99)
        for user, start, _end, status, cached, stale, versions in in_phase:
            ps.statuses[status] += 1
            if status == 500:
                ps.r500 += 1
            if status == 200 and versions is not None:
                ps.served += 1
                ps.hits += cached == 1
                ps.stale_flag += stale == 1
                if older(versions, api_index.latest_before(user, start)):
                    ps.stale_api += 1
                elif older(versions, ext_index.latest_before(user, start)):
                    ps.stale_ext += 1
            if status == 503:
                if run.keys is not None:
                    # "Cached user": its entry was in Redis from the moment the request was
                    # sent until its answer (MONITOR), so the service could have served it.
                    was_cached = run.keys.present_throughout(user, start, _end)
                else:
                    # Without a MONITOR stream (Redis scenarios, where any 503 fails anyway):
                    # its last successful read came from Redis and no write since could have
                    # removed the entry, as far as the load generator knows.
                    prior = last_ok.get(user, [])
                    i = bisect.bisect_left(prior, (start, -2)) - 1
                    was_cached = (
                        i >= 0
                        and prior[i][1] == 1
                        and not may_invalidate.any_between(user, prior[i][0] - allowance, start)
                    )
                if was_cached:
                    ps.r503_cached += 1
                else:
                    ps.r503_uncached += 1
        in_phase_w = [w for w in writes if lo <= w[2] < hi]
        ps.writes = len(in_phase_w)
        ps.write_p99 = pct([(w[3] - w[2]) * 1000 for w in in_phase_w], 0.99)
        for w in in_phase_w:
            ps.statuses[w[4]] += 1
            ps.w503 += w[4] == 503
        ps.skipped = sum(1 for t in d["skipped"] if lo <= t < hi)
        phases.append(ps)

    # Hit ratio per 1 s bucket from recovery on; the first bucket at or above the target.
    buckets: list[tuple[int, int, float | None]] = []
    seconds_to_target = None
    if run.recovered is not None:
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for _u, start, _e, status, cached, _s, versions in reads:
            if start >= run.recovered and status == 200 and versions is not None:
                counts[int(start - run.recovered)][0] += cached == 1
                counts[int(start - run.recovered)][1] += 1
        reached: list[bool] = []
        for k in range(int(run.end - run.recovered) + 1):
            hits, n = counts.get(k, [0, 0])
            ratio = hits / n if n else None
            buckets.append((k, n, ratio))
            reached.append(n >= 10 and ratio is not None and ratio >= opts.hit_target)
        # Back = the first second that, with the next one, is at or above the target: a single
        # lucky bucket of ~100 reads is noise, not recovery.
        for k in range(len(reached) - 1):
            if reached[k] and reached[k + 1]:
                seconds_to_target = float(k + 1)
                break
    repeat_hits = repeat_n = 0
    if run.recovered is not None:
        seen: set[int] = set()
        for user, start, _e, status, cached, _s, versions in sorted(reads, key=lambda r: r[1]):
            if not run.recovered <= start < run.recovered + 10 or status != 200 or not versions:
                continue
            if user in seen:
                repeat_n += 1
                repeat_hits += cached == 1
            seen.add(user)
    key_check = None
    if run.keys is not None:
        hit_reads = [r for r in reads if r[3] == 200 and r[4] == 1]
        confirmed = sum(run.keys.present_during(r[0], r[1], r[2]) for r in hit_reads)
        key_check = (confirmed, len(hit_reads))
    text = run.log_text
    messages: Counter[str] = Counter()
    for line in text.splitlines():
        m = LOG_LINE.search(line)
        if m:
            messages[NUMBERS.sub("N", UUIDS.sub("<uuid>", m.group(1)))[:160]] += 1
    tb = text.find("Traceback")
    ha = None if run.marks is None else ha_figures(run, reads, writes, api_index, ext_index)
    return Analysis(
        run=run,
        phases=phases,
        seconds_to_target=seconds_to_target,
        buckets=buckets,
        breaker_opens=text.count("-> open ("),
        undelivered_warnings=text.count("Undelivered invalidations pending"),
        errors_logged=sum(1 for line in text.splitlines() if " ERROR " in line),
        first_traceback=text[tb : tb + 2500] if tb >= 0 else "",
        repeat_hit_ratio=repeat_hits / repeat_n if repeat_n else None,
        messages=messages,
        key_check=key_check,
        ha=ha,
    )


def ha_figures(
    run: Run, reads: list[Read], writes: list[Any], api_index: WriteIndex, ext_index: WriteIndex
) -> HaFigures:
    m = run.marks
    assert m is not None

    def stale(user: int, start: float, versions: list[int]) -> bool:
        return older(versions, api_index.latest_before(user, start)) or older(
            versions, ext_index.latest_before(user, start)
        )

    late = None if m.promoted is None else m.promoted + 1.0
    healthy = set(m.healthy_users)
    f = HaFigures(0, 0, 0, 0, 0, 0, 0, None if run.lost is None else len(run.lost), run.checked)
    for user, start, _end, status, cached, _s, versions in reads:
        f.r5xx += status >= 500
        if status != 200 or versions is None:
            continue
        if start >= m.fault_start and stale(user, start, versions):
            f.stale += 1
            f.stale_late += late is not None and start >= late
            if len(f.examples) < 5:
                last = api_index.last_time_before(user, start)
                f.examples.append(
                    (
                        user,
                        start - m.fault_start,
                        _end - m.fault_start,
                        None if last is None else last - m.fault_start,
                    )
                )
        if m.fault_start <= start < m.recovered:
            f.fault_served += 1
            f.fault_hits += cached == 1
            if user in healthy:
                f.healthy_served += 1
                f.healthy_hits += cached == 1
    f.r5xx += sum(1 for w in writes if w[4] >= 500)
    return f
