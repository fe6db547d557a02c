"""`make bench` (`python -m bench.run`): the status endpoint under load over real HTTP, in
scenarios 1-7 (ceiling, DB only, warm Redis, remote DB, ETag polling, a realistic mix, cold start)
and an in-process micro benchmark; the targets are checked on the ratios of this one run.

How it measures, the knobs (BENCH_USERS, BENCH_DURATION, ...) and what it writes: bench/README.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.harness import tools
from bench.harness.env import PY
from bench.harness.postgres import SHARED_ADMIN_URL, create_database, drop_database
from bench.harness.procs import interrupt_on_termination
from bench.run_measure import (
    CEILING,
    DURATION,
    REMOTE_MS,
    STATUS,
    USERS,
    WARMUP,
    WRITE_PCT,
    BenchHarness,
    Row,
    background_db_rate,
    cold_start,
    log,
    measure,
    parse_bench_json,
)
from bench.run_report import report
from tests.support.procs import sh


def main() -> int:
    started = time.monotonic()
    tools.ensure_wrk()
    tools.require("bench", "redis-server", "psql")
    tools.require_shared_postgres("bench")
    pid = os.getpid()
    h = BenchHarness.in_temp_dir("bench-")
    h.db_name, h.prefix = f"connectors_bench_{pid}", f"bench-{pid}"
    interrupt_on_termination()
    try:
        return run(h, started)
    finally:
        h.cleanup()


def set_up(h: BenchHarness) -> dict[str, float | str]:
    """The database seeded and analysed, the token, the users file, the provider names."""
    h.start_redis()
    create_database(SHARED_ADMIN_URL, h.db_name)

    def drop() -> None:
        drop_database(SHARED_ADMIN_URL, h.db_name)
        log(f"dropped database {h.db_name}")

    h.on_cleanup(drop)
    db_only = h.app_env(redis=False)
    sh([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=db_only)
    t = time.monotonic()
    seed_out = sh([PY, "manage.py", "seed_demo", "--users", str(USERS)], env=db_only)
    seed_seconds = time.monotonic() - t
    log(seed_out.strip().splitlines()[-1] if seed_out.strip() else "seeded")
    # No autovacuum / autoanalyze transactions in the middle of a measurement.
    h.psql("VACUUM ANALYZE", db=h.db_name)
    h.calibrate()
    rows = h.psql("select count(*) from connectors_platformconnection", db=h.db_name).strip()
    h.token = sh(
        [PY, "manage.py", "issue_token", "--service-role", "--ttl", "7200"], env=db_only
    ).strip()
    script = (
        "from connectors.management.commands.seed_demo import demo_user_id\n"
        "from connectors.providers import PROVIDERS\n"
        "print(','.join(PROVIDERS))\n"
        f"print('\\n'.join(demo_user_id(i) for i in range({USERS})))"
    )
    providers, users = sh([PY, "manage.py", "shell", "-v", "0", "-c", script], env=db_only).split(
        "\n", 1
    )
    h.providers = providers.strip().split(",")
    h.users_file = str(h.tmp / "users.txt")
    Path(h.users_file).write_text(users)
    return {"seed_seconds": seed_seconds, "rows": rows}


def warm_every_user(h: BenchHarness, env: dict[str, str]) -> None:
    """Every user cached by the service's own `manage.py warm_cache` (two processes, one per
    core), checked key by key, so that scenario 3 is all hits."""
    log(f"warming the cache with manage.py warm_cache ({USERS:,} users, 2 processes)")
    all_users = Path(h.users_file).read_text().split()
    missing = all_users
    r = h.redis.client(db=12)
    for _ in range(3):
        h.wait_warm_cache(h.start_warm_cache(missing, env))
        pipe = r.pipeline(transaction=False)
        for user in missing:
            pipe.exists(f"{h.prefix}:1:platform_status:{{{user}}}")
        missing = [u for u, found in zip(missing, pipe.execute(), strict=True) if not found]
        log(f"cache holds {len(all_users) - len(missing):,} of {len(all_users):,} status entries")
        if not missing:
            break


def run(h: BenchHarness, started: float) -> int:
    log(
        f"throwaway redis-server on 127.0.0.1:{h.redis.port}, database {h.db_name}, "
        f"prefix {h.prefix}, gunicorn on 127.0.0.1:{h.http_port}"
    )
    info = set_up(h)
    cached = h.app_env()
    db_only = h.app_env(redis=False)
    remote_cached = h.app_env(latency_ms=REMOTE_MS)
    remote_db = h.app_env(redis=False, latency_ms=REMOTE_MS)

    rows: list[Row] = []
    rows.append(
        measure(
            h,
            "1",
            "ceiling: constant body, same stack",
            cached,
            path=CEILING,
            mode="zipf",
            warmup=WARMUP,
        )
    )
    rows.append(
        measure(h, "2", "DB only (no REDIS_URL)", db_only, path=STATUS, mode="zipf", warmup=WARMUP)
    )
    warm_every_user(h, cached)
    h.background_rate = background_db_rate(h, cached)
    rows.append(
        measure(
            h,
            "3",
            "Redis, warm (all users cached)",
            cached,
            path=STATUS,
            mode="zipf",
            warmup=WARMUP,
        )
    )
    rows.append(
        measure(
            h,
            "6b",
            f"Redis, warm, remote DB (+{REMOTE_MS:g} ms/query)",
            remote_cached,
            path=STATUS,
            mode="zipf",
            warmup=0,
        )
    )
    rows.append(
        measure(
            h,
            "6a",
            f"DB only, remote DB (+{REMOTE_MS:g} ms/query)",
            remote_db,
            path=STATUS,
            mode="zipf",
            warmup=WARMUP,
        )
    )
    unloaded_s = max(3, DURATION // 2)
    # Per-request latency over one connection. 1c is the floor for 6c: no cache and no DB can
    # answer faster than this stack does.
    for key, label, env, path in (
        ("1c", "ceiling", cached, CEILING),
        ("6c", "Redis, warm, remote DB", remote_cached, STATUS),
        ("6d", "DB only, remote DB", remote_db, STATUS),
    ):
        rows.append(
            measure(
                h,
                key,
                f"{label}, 1 connection ({unloaded_s} s)",
                env,
                path=path,
                mode="zipf",
                warmup=WARMUP,
                seconds=unloaded_s,
                conns=1,
                note="unloaded latency",
                warm_in_place=True,
            )
        )
    rows.append(
        measure(
            h,
            "7",
            "ETag polling (If-None-Match), Redis",
            cached,
            path=STATUS,
            mode="etag",
            warmup=WARMUP,
            note="304 share: see below",
        )
    )
    # Mix: wrk sends half of the writes (DELETE disconnect), the side writer the other half.
    warm_rps = rows[2].wrk["rps"]
    side_rate = max(1.0, warm_rps * 0.8 * (WRITE_PCT / 2) / 100)
    rows.append(
        measure(
            h,
            "4",
            f"Redis, realistic mix (~{WRITE_PCT:g}% writes)",
            cached,
            path=STATUS,
            mode="mix",
            warmup=WARMUP,
            write_pct=WRITE_PCT / 2,
            side_rate=side_rate,
        )
    )
    cold_row, buckets = cold_start(h, cached)
    rows.append(cold_row)

    log("micro benchmark (in-process)")
    micro_env = h.app_env()
    micro_env["BENCH_USERS_FILE"] = h.users_file
    profile_path = h.tmp / "profile.txt"
    micro = parse_bench_json(sh([PY, "-m", "bench.micro", str(profile_path)], env=micro_env))
    report(
        h,
        rows,
        buckets,
        micro,
        profile_path.read_text(),
        {**info, "side_rate": side_rate, "elapsed": time.monotonic() - started},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
