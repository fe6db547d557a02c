"""`make bench` (`python -m bench.run`): the status endpoint under load over real HTTP, in
scenarios 1-7 (ceiling, DB only, warm Redis, remote DB, ETag polling, a realistic mix, cold start),
the same load on the seed's own Express stack (E rows) and on other servers (3t, 3s), and an
in-process micro benchmark; the targets are checked on the ratios of this one run.

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
from bench.run_express import check_identical_documents, express_rows
from bench.run_measure import (
    CEILING,
    DURATION,
    REMOTE_MS,
    SERVER,
    SERVER_ROWS,
    SERVER_SECONDS,
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
    measure_one_connection,
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
    # Every user's own access token (a dashboard's load), in Zipf rank order.
    script = (
        "from connectors.auth import issue_token\n"
        "from connectors.management.commands.seed_demo import demo_user_id\n"
        "from connectors.providers import PROVIDERS\n"
        "print(','.join(PROVIDERS))\n"
        f"for u in (demo_user_id(i) for i in range({USERS})):\n"
        "    print(u, issue_token(user_id=u, ttl_seconds=7200))"
    )
    providers, pairs = sh([PY, "manage.py", "shell", "-v", "0", "-c", script], env=db_only).split(
        "\n", 1
    )
    h.providers = providers.strip().split(",")
    h.tokens = dict(line.split(" ", 1) for line in pairs.strip().splitlines())
    h.users_file = str(h.tmp / "users.txt")
    Path(h.users_file).write_text("\n".join(h.tokens) + "\n")
    h.tokens_file = str(h.tmp / "tokens.txt")
    Path(h.tokens_file).write_text(pairs)
    return {"seed_seconds": seed_seconds, "rows": rows}


def warm_every_user(h: BenchHarness, env: dict[str, str]) -> None:
    """Every user cached by the service's own `manage.py warm_cache` (two processes, one per
    core), checked key by key, so that scenario 3 is all hits. The cache is cleared first, so
    every entry is as fresh (TTL 300 s) when the warm rows start."""
    log(f"warming the cache with manage.py warm_cache ({USERS:,} users, 2 processes)")
    sh([PY, "manage.py", "clear_cache"], env=env)
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
        f"prefix {h.prefix}, {SERVER} on 127.0.0.1:{h.http_port}"
    )
    info = set_up(h)
    cached = h.service(h.app_env())
    db_only = h.service(h.app_env(redis=False))
    remote_cached = h.service(h.app_env(latency_ms=REMOTE_MS))
    remote_db = h.service(h.app_env(redis=False, latency_ms=REMOTE_MS))
    unloaded_s = max(3, DURATION // 2)

    # Issue 14: the seed's own stack, checked to answer the same documents before any timing;
    # its warm rows right after the check, while the entries the check left are fresh.
    check_identical_documents(h, cached)
    rows: list[Row] = express_rows(h, unloaded_s)
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
    warm_every_user(h, cached.env)
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
    if SERVER_ROWS:
        # Issue 11: the same warm-hit load on the servers `make serve` could have used, right
        # after 3 (granian), so that the machine's other load is as alike as it can be.
        for key, server in (("3t", "gunicorn-gthread"), ("3s", "gunicorn-sync")):
            rows.append(
                measure(
                    h,
                    key,
                    f"Redis, warm, {server} ({SERVER_SECONDS} s)",
                    h.service(cached.env, server),
                    path=STATUS,
                    mode="zipf",
                    warmup=1,
                    seconds=SERVER_SECONDS,
                    note="server choice"
                    + (" (closes every connection)" if server == "gunicorn-sync" else ""),
                )
            )
    rows.append(
        measure_one_connection(h, "3c", "Redis, warm", cached, path=STATUS, seconds=unloaded_s)
    )
    rows.append(
        measure(
            h,
            "3x",
            "Redis, warm, Connection: close",
            cached,
            path=STATUS,
            mode="zipf",
            warmup=WARMUP,
            close=True,
            note="a new TCP connection per request",
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
    # Per-request latency over one connection. 1c is the floor for 6c: no cache and no DB can
    # answer faster than this stack does.
    for key, label, stack, path in (
        ("1c", "ceiling", cached, CEILING),
        ("6c", "Redis, warm, remote DB", remote_cached, STATUS),
        ("6d", "DB only, remote DB", remote_db, STATUS),
    ):
        rows.append(measure_one_connection(h, key, label, stack, path=path, seconds=unloaded_s))
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
    warm_rps = next(r for r in rows if r.key == "3").wrk["rps"]
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
            warm_in_place=False,
        )
    )
    cold_row, buckets = cold_start(h, cached)
    rows.append(cold_row)

    log("micro benchmark (in-process)")
    micro_env = h.app_env()
    micro_env["BENCH_TOKENS_FILE"] = h.tokens_file
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
