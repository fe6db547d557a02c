"""`make faults`' options: the scenarios, the two configurations, the phase timings and the
load, each from the command line or the matching FAULTS_* variable (bench/README.md)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

SCENARIOS = {
    "a": "redis kill -9, restart empty",
    "b": "redis SIGSTOP / SIGCONT",
    "c": "postgres stop -m fast",
    "d": "sentinel failover (SENTINEL FAILOVER)",
    "e": "sentinel split brain (old master paused, promoted replica, old master back)",
    "f": "cluster node failover (one of 3 masters paused)",
    "g": "overload 3x (CPU hogs next to the app)",
}
# Scenarios a-c: django-redis' IGNORE_EXCEPTIONS with redis-py-like timeouts, no breaker, no replay.
NAIVE_ENV = {
    "CACHE_BREAKER_THRESHOLD": "0",
    "CACHE_OUTBOX_SWEEP_SECONDS": "0",
    "REDIS_SOCKET_TIMEOUT": "5",
    "REDIS_CONNECT_TIMEOUT": "5",
}
# Scenarios d-g (issue 12): the pre-HA behaviour. No WAIT, no replay of the outbox window when
# the master changes (settings), one breaker for every node and plain 25 ms timeouts opening it
# (tests/support/naive_ha.py, through the bench app).
NAIVE_HA_ENV = {
    "REDIS_WAIT_REPLICAS": "0",
    "CACHE_OUTBOX_RETENTION_SECONDS": "0",
    "BENCH_HA_MODE": "naive",
}
HA_SCENARIOS = ("d", "e", "f", "g")


def naive_env(scenario: str) -> dict[str, str]:
    return NAIVE_HA_ENV if scenario in HA_SCENARIOS else NAIVE_ENV


@dataclass(frozen=True)
class Options:
    duration: float
    fault_at: float
    recover_at: float
    pg_down: float
    baseline: float
    rate: float
    threads: int
    workers: int
    users: int
    zipf_s: float
    write_pct: float
    reset_share: float
    scenarios: tuple[str, ...]
    configs: tuple[str, ...]
    hit_target: float
    recovery_target_s: float
    p99_slack_ms: float
    ha_duration: float
    ha_fault_at: float
    ha_write_pct: float
    hogs: int


def parse_options(argv: list[str] | None = None) -> Options:
    def env(name: str, default: str) -> str:
        return os.environ.get(name, default)

    p = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description="The status service under load while Redis or Postgres fail.",
    )
    p.add_argument("--duration", type=float, default=float(env("FAULTS_DURATION", "60")))
    p.add_argument("--fault-at", type=float, default=float(env("FAULTS_AT", "20")))
    p.add_argument("--recover-at", type=float, default=float(env("FAULTS_RECOVER_AT", "40")))
    p.add_argument("--pg-down", type=float, default=float(env("FAULTS_PG_DOWN", "10")))
    p.add_argument("--baseline", type=float, default=float(env("FAULTS_BASELINE", "10")))
    p.add_argument("--rate", type=float, default=float(env("FAULTS_RATE", "100")))
    p.add_argument("--threads", type=int, default=int(env("FAULTS_THREADS", "32")))
    p.add_argument("--workers", type=int, default=int(env("FAULTS_WORKERS", "3")))
    p.add_argument("--users", type=int, default=int(env("FAULTS_USERS", "2000")))
    p.add_argument("--zipf-s", type=float, default=float(env("FAULTS_ZIPF_S", "1.2")))
    p.add_argument(
        "--write-pct",
        type=float,
        default=float(env("FAULTS_WRITE_PCT", "3")),
        help="percent of operations that are API writes (each also triggers one SQL re-activation)",
    )
    p.add_argument("--reset-share", type=float, default=0.25, help="share of API writes = reset")
    # Scenarios d-g: short runs (the failover itself takes seconds); in d and e writes dense
    # enough that some land right around the master change.
    p.add_argument("--ha-duration", type=float, default=float(env("FAULTS_HA_DURATION", "20")))
    p.add_argument("--ha-fault-at", type=float, default=float(env("FAULTS_HA_AT", "5")))
    p.add_argument("--ha-write-pct", type=float, default=float(env("FAULTS_HA_WRITE_PCT", "15")))
    p.add_argument(
        "--hogs",
        type=int,
        default=int(env("FAULTS_HOGS", str(2 * (os.cpu_count() or 1)))),
        help="scenario g: busy-looping processes next to the app (2 per CPU: ~3x the CPUs)",
    )
    p.add_argument("--scenarios", default=env("FAULTS_SCENARIOS", "a,b,c,d,e,f,g"))
    p.add_argument("--configs", default=env("FAULTS_CONFIGS", "service,naive"))
    p.add_argument("--hit-target", type=float, default=0.9)
    p.add_argument("--recovery-target-s", type=float, default=10.0)
    p.add_argument("--p99-slack-ms", type=float, default=15.0)
    a = p.parse_args(argv)
    scenarios = tuple(s for s in a.scenarios.split(",") if s)
    configs = tuple(c for c in a.configs.split(",") if c)
    if not set(scenarios) <= set(SCENARIOS) or not set(configs) <= {"service", "naive"}:
        p.error(f"scenarios are {','.join(SCENARIOS)}; configs are service,naive")
    if not 0 < a.fault_at < a.recover_at < a.duration or a.fault_at + a.pg_down >= a.duration:
        p.error("need 0 < fault-at < recover-at < duration and fault-at + pg-down < duration")
    if not 0 < a.ha_fault_at < a.ha_duration - 10:
        p.error("need 0 < ha-fault-at < ha-duration - 10 (a failover takes seconds)")
    return Options(
        duration=a.duration,
        fault_at=a.fault_at,
        recover_at=a.recover_at,
        pg_down=a.pg_down,
        baseline=a.baseline,
        rate=a.rate,
        threads=a.threads,
        workers=a.workers,
        users=a.users,
        zipf_s=a.zipf_s,
        write_pct=a.write_pct,
        reset_share=a.reset_share,
        scenarios=scenarios,
        configs=configs,
        hit_target=a.hit_target,
        recovery_target_s=a.recovery_target_s,
        p99_slack_ms=a.p99_slack_ms,
        ha_duration=a.ha_duration,
        ha_fault_at=a.ha_fault_at,
        ha_write_pct=a.ha_write_pct,
        hogs=a.hogs,
    )
