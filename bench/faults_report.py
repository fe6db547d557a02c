"""`make faults`' verdicts (the targets, per configuration) and its report, written to
bench/results/faults-<date>-<commit>.md and faults-latest.md."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.faults_analysis import Analysis, PhaseStats
from bench.faults_options import NAIVE_ENV, NAIVE_HA_ENV, Options
from bench.harness import results


# --- Targets and report ----------------------------------------------------------------------
@dataclass
class Verdict:
    r500: int
    r503_redis: int
    r503_cached_pg: int
    r503_pg_outside: int
    stale_after: int
    stale_during: int
    p99_delta: float
    seconds_to_target: float | None
    checks: list[tuple[str, str, bool]]
    # Issue 12's summary lines (scenarios d-g): (label, value), in the order run.
    ha: list[tuple[str, str]]
    classic: bool  # whether any of scenarios a-c ran (their summary lines mean nothing else)


# Issue 12's targets: a healthy shard keeps its hits while another fails over, and the app's own
# CPU saturation costs neither hits nor a breaker opening.
HEALTHY_HIT_TARGET = 0.95
OVERLOAD_HIT_TARGET = 0.95


def ha_checks(analyses: list[Analysis]) -> list[tuple[str, str, str, bool]]:
    """(summary label, value, target, met) for each figure of scenarios d-g that ran."""
    out: list[tuple[str, str, str, bool]] = []

    def pct_line(x: float | None) -> str:
        return "n/a" if x is None else f"{x * 100:.1f}%"

    for a in analyses:
        f, scenario = a.ha, a.run.scenario
        if f is None:
            continue
        if scenario == "d":
            out.append(
                (
                    "sentinel failover: stale reads later than 1 s after promotion",
                    f"{f.stale_late}",
                    "0",
                    f.stale_late == 0,
                )
            )
            out.append(("sentinel failover: 5xx", f"{f.r5xx}", "0", f.r5xx == 0))
        elif scenario == "e":
            lost = f.lost if f.lost is not None else -1
            out.append(("sentinel split brain: lost invalidations", f"{lost}", "0", lost == 0))
        elif scenario == "f":
            out.append(("cluster node failover: stale reads", f"{f.stale}", "0", f.stale == 0))
            ratio = f.healthy_hit_ratio
            out.append(
                (
                    "cluster node failover: hit ratio on healthy nodes during failover",
                    pct_line(ratio),
                    f">= {HEALTHY_HIT_TARGET:.0%}",
                    ratio is not None and ratio >= HEALTHY_HIT_TARGET,
                )
            )
        elif scenario == "g":
            ratio = f.fault_hit_ratio
            out.append(
                (
                    "overload 3x: hit ratio",
                    pct_line(ratio),
                    f">= {OVERLOAD_HIT_TARGET:.0%}",
                    ratio is not None and ratio >= OVERLOAD_HIT_TARGET,
                )
            )
            out.append(
                (
                    "overload 3x: breaker openings",
                    f"{a.breaker_opens}",
                    "0",
                    a.breaker_opens == 0,
                )
            )
    return out


def verdict(analyses: list[Analysis], baseline: Analysis | None, opts: Options) -> Verdict:
    fault_runs = [a for a in analyses if a.run.scenario in ("a", "b", "c")]

    def phase(a: Analysis, name: str) -> PhaseStats:
        return next(p for p in a.phases if p.name == name)

    r500 = sum(p.statuses[500] for a in fault_runs for p in a.phases)
    redis_runs = [a for a in fault_runs if a.run.scenario in ("a", "b")]
    pg_runs = [a for a in fault_runs if a.run.scenario == "c"]
    r503_redis = sum(p.statuses[503] for a in redis_runs for p in a.phases)
    r503_cached_pg = sum(phase(a, "during").r503_cached for a in pg_runs)
    # The MONITOR timeline must agree with every cache hit (each found its entry in Redis) and
    # know every command that touched an entry; otherwise its verdict on 503s is not trusted.
    key_checks = [a.key_check for a in pg_runs if a.key_check is not None]
    keys_ok = all(
        a.key_check is not None
        and a.key_check[0] == a.key_check[1]
        and a.run.keys is not None
        and not a.run.keys.unknown
        for a in pg_runs
    )
    unknown = sum((a.run.keys.unknown for a in pg_runs if a.run.keys is not None), Counter())
    keys_note = (
        "; MONITOR confirmed " + ", ".join(f"{ok:,}/{n:,}" for ok, n in key_checks) + " hits"
    ) + (f"; commands it cannot place: {dict(unknown)}" if unknown else "")
    # Reads answered 503 outside the Postgres outage (writes cannot help failing during it).
    r503_pg_outside = sum(
        p.r503_cached + p.r503_uncached for a in pg_runs for p in a.phases if p.name != "during"
    )
    stale_after = sum(phase(a, "after").stale_api + phase(a, "after").stale_ext for a in fault_runs)
    stale_during = sum(
        phase(a, "during").stale_api + phase(a, "during").stale_ext for a in fault_runs
    )
    base_p99 = baseline.phases[0].read_p99 if baseline else float("nan")
    outage_p99 = max((phase(a, "during").read_p99 for a in redis_runs), default=float("nan"))
    p99_delta = outage_p99 - base_p99
    times = [a.seconds_to_target for a in fault_runs]
    worst = None if any(t is None for t in times) or not times else max(t for t in times if t)
    ha = ha_checks(analyses)
    checks = [
        ("0 responses with status 500", f"{r500}", r500 == 0),
        (
            "503 only for uncached users while Postgres is down, none in a Redis-only outage",
            f"{r503_cached_pg} for cached users, {r503_pg_outside} outside the outage, "
            f"{r503_redis} in Redis scenarios" + (keys_note if pg_runs else ""),
            r503_cached_pg == 0
            and r503_redis == 0
            and r503_pg_outside == 0
            and (keys_ok or not pg_runs),
        ),
        (
            f"p99 during a Redis outage within {opts.p99_slack_ms:g} ms of DB-only p99",
            f"{outage_p99:.1f} - {base_p99:.1f} = {p99_delta:+.1f} ms",
            p99_delta <= opts.p99_slack_ms,
        ),
        (
            "0 stale reads after recovery",
            f"{stale_after} (during: {stale_during})",
            stale_after == 0,
        ),
        (
            f"hit ratio back above {opts.hit_target:.0%} within {opts.recovery_target_s:g} s",
            "never" if worst is None else f"{worst:g} s (worst scenario)",
            worst is not None and worst <= opts.recovery_target_s,
        ),
    ]
    if not fault_runs:
        checks = []
    checks += [(f"{label}: {target}", value, ok) for label, value, target, ok in ha]
    return Verdict(
        r500,
        r503_redis,
        r503_cached_pg,
        r503_pg_outside,
        stale_after,
        stale_during,
        p99_delta,
        worst,
        checks,
        [(label, value) for label, value, _t, _ok in ha],
        bool(fault_runs),
    )


def fmt(x: float | None, spec: str = ".1f") -> str:
    if x is None or x != x:  # None or NaN
        return "n/a"
    return format(x, spec)


def phase_table(analyses: list[Analysis]) -> str:
    lines = [
        "| scenario | config | phase | s | reads | writes | non-2xx (status:n) | skipped | "
        "read p50 ms | read p99 ms | write p99 ms | hit ratio | stale reads API / ext | "
        "503 reads uncached / cached | 503 writes |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in analyses:
        for p in a.phases:
            lines.append(
                f"| {a.run.scenario}: {a.run.title} | {a.run.config} | {p.name} | {p.seconds:.1f} | "
                f"{p.reads:,} | {p.writes:,} | {p.non_2xx} | {p.skipped:,} | {fmt(p.read_p50)} | "
                f"{fmt(p.read_p99)} | {fmt(p.write_p99)} | "
                f"{fmt(None if p.hit_ratio is None else p.hit_ratio * 100)}% | "
                f"{p.stale_api} / {p.stale_ext} | {p.r503_uncached} / {p.r503_cached} | {p.w503} |"
            )
    return "\n".join(lines)


def run_table(analyses: list[Analysis], opts: Options) -> str:
    lines = [
        f"| scenario | config | s to hit ratio {opts.hit_target:.0%} | hit ratio % per second after "
        "recovery (first 12 s) | same, repeat reads only, first 10 s | external writes (SQL) | "
        "404 no-op writes | breaker opened (log) | undelivered warnings | ERROR log lines | "
        "other CPU | warm-up |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in analyses:
        d = a.run.data
        per_second = " ".join(
            "-" if r is None else f"{r * 100:.0f}" for _k, _n, r in a.buckets[:12]
        )
        repeat = "n/a" if a.repeat_hit_ratio is None else f"{a.repeat_hit_ratio * 100:.1f}%"
        lines.append(
            f"| {a.run.scenario} | {a.run.config} | {fmt(a.seconds_to_target, 'g')} | "
            f"{per_second or 'n/a'} | {repeat} | "
            f"{len(d['external']):,} (+{d['external_errors']} failed) | {d['noop_writes']:,} | "
            f"{a.breaker_opens} | {a.undelivered_warnings} | {a.errors_logged} | "
            f"{a.run.other_cpu:.0f}% | {a.run.warm_note or 'n/a'} |"
        )
    return "\n".join(lines)


def ha_table(analyses: list[Analysis]) -> str:
    """Issue 12's scenarios, one row per run: when the fault's steps happened and its figures."""
    lines = [
        "| scenario | config | promoted (s after fault) | +switch-master | old master demoted | "
        "fault over | stale reads from the fault on | of them > 1 s after promotion | 5xx | "
        "written users read once after the run: older than the DB | hit ratio during the fault | "
        "same, users on healthy shards | breaker opened (log) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in analyses:
        f, m = a.ha, a.run.marks
        if f is None or m is None:
            continue

        def since(t: float | None, m: Any = m) -> str:
            return "-" if t is None else f"{t - m.fault_start:.1f}"

        lost = "-" if f.lost is None else f"{f.lost} of {f.checked}"
        hit = fmt(None if f.fault_hit_ratio is None else f.fault_hit_ratio * 100)
        healthy = (
            "-"
            if f.healthy_hit_ratio is None
            else f"{f.healthy_hit_ratio * 100:.1f}% of {f.healthy_served:,}"
        )
        lines.append(
            f"| {a.run.scenario}: {a.run.title} | {a.run.config} | {since(m.promoted)} | "
            f"{since(m.switched)} | {since(m.demoted)} | {since(m.recovered)} | {f.stale} | "
            f"{f.stale_late} | {f.r5xx} | {lost} | {hit}% of {f.fault_served:,} | {healthy} | "
            f"{a.breaker_opens} |"
        )
    return "\n".join(lines) if len(lines) > 2 else "not run"


def summary_lines(v: Verdict, prefix: str = "") -> list[str]:
    ha = [f"{prefix}{label}: {value}" for label, value in v.ha]
    if not v.classic:
        return ha
    return [
        f"{prefix}500s during faults: {v.r500}",
        f"{prefix}503s during redis-only outages: {v.r503_redis}",
        f"{prefix}stale reads after recovery: {v.stale_after}",
        f"{prefix}outage p99 minus db-only p99 ms: {fmt(v.p99_delta)}",
        f"{prefix}seconds to hit ratio 90% after recovery: "
        + ("never" if v.seconds_to_target is None else f"{v.seconds_to_target:g}"),
        *ha,
    ]


def report(
    o: Options,
    info: dict[str, Any],
    analyses: list[Analysis],
    verdicts: dict[str, Verdict],
    *,
    elapsed: float,
    postgres_port: int,
) -> tuple[str, Path]:
    """The report's text, and the results file it was written to."""
    commit, dirty = results.git_commit()
    versions = ", ".join(
        f"{k} {v}" for k, v in results.versions(postgres_port=postgres_port).items()
    )
    today = dt.date.today().isoformat()
    baseline = next((a for a in analyses if a.run.scenario == "baseline"), None)

    def check(ok: bool) -> str:
        return "PASS" if ok else "**FAIL**"

    targets = [
        "| target | service | | naive | |",
        "|---|---|---|---|---|",
    ]
    names = [c[0] for c in next(iter(verdicts.values())).checks] if verdicts else []
    for i, name in enumerate(names):
        cells = []
        for config in ("service", "naive"):
            v = verdicts.get(config)
            cells.append(f"{v.checks[i][1]} | {check(v.checks[i][2])}" if v else "not run | ")
        targets.append(f"| {name} | {' | '.join(cells)} |")
    logs = []
    for a in analyses:
        if a.messages:
            logs.append(f"- {a.run.scenario}/{a.run.config}:")
            logs += [f"  - {n:,} x `{m}`" for m, n in a.messages.most_common(5)]
    traces = [
        f"### {a.run.scenario}/{a.run.config}: first traceback in the gunicorn log\n\n```\n"
        f"{a.first_traceback}\n```"
        for a in analyses
        if a.first_traceback
    ]
    allowance = float(info["grace"]) + float(info["sweep"]) + 1.0
    base_line = (
        f"DB-only baseline ({o.baseline:g} s, no REDIS_URL): read p50 {fmt(baseline.phases[0].read_p50)} ms, "
        f"p99 {fmt(baseline.phases[0].read_p99)} ms."
        if baseline
        else "DB-only baseline: not run."
    )
    summary = []
    for config, prefix in (("service", ""), ("naive", "naive ")):
        if config in verdicts:
            summary += summary_lines(verdicts[config], prefix)
    md = f"""# `make faults` results: {today}, commit {commit}{" (working tree with uncommitted changes)" if dirty else ""}

The status service under load while its Redis or its Postgres fails (bench/faults.py, bench/loadgen.py).
{versions}; {os.cpu_count()} CPUs. Whole run: {elapsed:.0f} s.

**Phase timings used:** each run {o.duration:g} s; Redis fault at {o.fault_at:g} s, recovery at
{o.recover_at:g} s; Postgres stopped at {o.fault_at:g} s for {o.pg_down:g} s (recovered at
{o.fault_at + o.pg_down:g} s). DB-only baseline {o.baseline:g} s. Phases: *before* = start .. fault,
*during* = fault .. recovery (Redis accepting connections again / `pg_ctl start -w` returned), *after*
= recovery .. end; a request belongs to the phase in which it started.

**Load:** one process (bench/loadgen.py), open loop at {o.rate:g} operations/s, {o.threads} threads,
{o.users:,} seeded users drawn by Zipf (s={o.zipf_s:g}), service-role token (throttles also off).
{o.write_pct:g}% of operations are API writes ({(1 - o.reset_share) * 100:.0f}% DELETE
/api/connectors/<provider>/<user>, {o.reset_share * 100:.0f}% POST /api/connectors/reset/<user>); each
successful one schedules a direct SQL UPDATE re-activating that user's rows 0.5-2 s later (another
service writing the shared table: the app learns of it only through the outbox trigger's row and its
sweeper). Server: gunicorn, {o.workers} sync workers, DEBUG off, LOG_LEVEL=warning, a fresh
redis-server and a fresh key prefix per run, the cache warmed by `manage.py warm_cache` before the
load starts. An operation not sent within 1 s of its schedule (all threads stuck) is *skipped*.

**Configurations:** *service* = the defaults (breaker threshold {info["threshold"]}, cool-down
{info["cooldown"]:g} s, outbox sweep every {info["sweep"]:g} s for rows older than {info["grace"]:g} s,
Redis socket/connect timeout {info["socket_timeout"]:g}/{info["connect_timeout"]:g} s, stale-if-error
{info["stale_if_error"]} s). *naive* in scenarios a-c = {", ".join(f"{k}={v}" for k, v in NAIVE_ENV.items())}: django-redis'
IGNORE_EXCEPTIONS with redis-py-like timeouts, no breaker, no replay. *naive* in scenarios d-g =
the behaviour before issue 12: {", ".join(f"{k}={v}" for k, v in NAIVE_HA_ENV.items())} (no `WAIT`,
no replay of the outbox window when the master changes; tests/support/naive_ha.py: one breaker for
every Redis node, and a timeout counting as a failure at once, without the confirming PING).

**Stale reads:** a 200 read that started after a write to that user returned (API writes: from
the moment the response arrived; the per-provider versions were read back from Postgres under a
per-user lock, so they are exactly what the write left) but shows some provider at a lower
version. External SQL writes are promised only within about grace + sweep interval: they count
from commit + {allowance:g} s. *503 reads cached* = a 503 for a user whose status entry was in
Redis from the moment the request was sent until its answer, by the run's `redis-cli MONITOR`
stream (scenario c; checked against every cache hit of the run, each of which must find its entry
present); in the Redis scenarios, a user whose last successful read was a cache hit with no
recorded write since.

**Hit ratio after recovery:** the share of 200 reads answered from Redis (`cached`), per 1 s
bucket from the recovery; "s to hit ratio" = the end of the first bucket that, with the next one,
is at or above {o.hit_target:.0%}. In scenario a Redis comes back empty, so this is mostly the
time the load needs to refill it; "repeat reads only" leaves out each user's first read after
the recovery (a miss no cache configuration can avoid) and so shows what the service itself loses.

**Rate:** {o.rate:g} operations/s keeps the DB-only path below saturation on this machine (at 200/s the
DB-only p50 was ~75 ms, i.e. queueing), so the outage-vs-DB-only p99 comparison measures the
service, not a queue. *other CPU* = CPU used during the run by processes that are not this
benchmark's, in % of one CPU (the machine may be shared).

{base_line}

## Per scenario, configuration and phase

{phase_table(analyses)}

## Recovery per run

{run_table(analyses, o)}

Warning and error lines in each run's gunicorn log (most frequent first, UUIDs and numbers
folded; LOG_LEVEL=warning):

{chr(10).join(logs) or "none"}

## Issue 12: failover, split brain, overload (scenarios d-g)

Each run {o.ha_duration:g} s (e: {o.ha_duration + 5:g} s), the fault at {o.ha_fault_at:g} s; times
below are seconds after the fault began. d: `SENTINEL FAILOVER` against a master, a replica and three
sentinels (tests/support/topologies.py; down-after 1 s); {o.ha_write_pct:g}% of operations are API
writes, so that some land between the promotion, `+switch-master` and the old master's demotion
(it keeps accepting writes until Sentinel converts it, ~10-15 s). e: the master SIGSTOPped until the
replica is promoted, resumed at once (before `+switch-master`): a master in its own eyes, taking writes from every
connection still open to it, until demoted. f: one of a Cluster's 3 masters (3 replicas)
SIGSTOPped until its replica serves its slots, resumed 1 s later; "healthy shards" = users whose
hash slot lives on the other two masters, read between the pause and the promotion. g: {o.hogs}
busy-looping processes next to the app for {o.ha_duration - 5 - o.ha_fault_at:g} s (2 per CPU: with
the app's own work, ~3x what the CPUs can run), Redis healthy; hit ratio over the reads that
started while they ran. In d-f, once the load is over (and grace + sweep + 1 s later), every user
written to during the run is read once more through the app and compared with the database: an
answer older than the rows is an invalidation lost for good (until the entry's TTL).

{ha_table(analyses)}

## Targets

{chr(10).join(targets)}

## Summary

```
{chr(10).join(summary)}
```
{chr(10).join(traces)}
"""
    return md, results.write(f"faults-{today}-{commit}", md, latest="faults-latest.md")
