"""`make consistency`: the long-run freshness check against real Postgres and Redis.

What it runs (connectors/consistency.py has the recorder, the checker and the workloads):

1. The register workload twice, in "service" and "naive" cache mode: 12 readers and 4 writers
   over 200 Zipf-skewed users, 200,000 operations per mode, 0-N ms injected between a writer's
   UPDATE and its COMMIT and between a reader's DB read and its cache SET. Service mode must
   show 0 violations; naive mode (DEL inside the transaction + plain SET) must show some, or
   the checker proves nothing.
2. Every write path 1,000 times, each followed by a read that must show the new version:
   Model.save (update and insert), Model.delete, QuerySet.update, QuerySet.delete, bulk_create,
   bulk_update (on_commit invalidation) and raw SQL through Django's cursor (no signal: only the
   NOTIFY listener of connectors/listener.py, running in a thread, invalidates it). It reports
   commit-to-invalidated latency p50/p99 for both mechanisms. FK cascades are not a path here:
   no model references PlatformConnection.
3. Cold burst: 100 readers released together on an uncached user, 10 times: DB queries per burst.
4. Hot key: 60 s of steady reads of one user with a 5 s TTL: fills per TTL window.

It creates its own database (connectors_consistency_<pid>) and drops it afterwards, and uses
Redis DB 11 under its own key prefix, deleting only those keys. The parent process does that
set-up and re-runs this file as a child with DATABASE_URL / REDIS_URL pointing at them, because
Django reads them once, at settings import.

Environment: BENCH_ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/11).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
CHILD_FLAG = "CONNECTORS_CONSISTENCY_CHILD"
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=200_000, help="operations per mode (reads + writes)")
    p.add_argument("--readers", type=int, default=12)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--users", type=int, default=200)
    p.add_argument(
        "--delay-ms",
        type=float,
        default=20.0,
        help="upper bound of each injected delay (before COMMIT, before the cache SET)",
    )
    p.add_argument("--paths", type=int, default=1000, help="iterations of every write path")
    p.add_argument("--bursts", type=int, default=10)
    p.add_argument("--hot-seconds", type=float, default=60.0)
    p.add_argument("--hot-ttl", type=float, default=5.0)
    p.add_argument("--max-seconds", type=float, default=300.0, help="hard stop per mode")
    return p.parse_args()


# --- Parent: a private database and key prefix around the child run -------------------------
def parent(args: argparse.Namespace) -> int:
    import psycopg
    import redis
    from psycopg import sql

    pid = os.getpid()
    dbname = f"connectors_consistency_{pid}"
    prefix = f"connectors-consistency-{pid}"
    admin = urlsplit(ADMIN_URL)
    db_url = urlunsplit(admin._replace(path=f"/{dbname}"))
    env = {
        **os.environ,
        CHILD_FLAG: "1",
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": prefix,
        # Throwaway secrets: the settings refuse to start without them and nothing here keeps
        # tokens.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DJANGO_DEBUG": "0",  # DEBUG would keep every query in memory
        "LOG_LEVEL": "warning",
        "DATABASE_CONN_MAX_AGE": "600",
    }
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    print(f"database {dbname}, Redis {REDIS_URL} prefix {prefix!r}", flush=True)
    try:
        return subprocess.run(
            [sys.executable, __file__, *sys.argv[1:]], env=env, cwd=ROOT, check=False
        ).returncode
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
        r = redis.Redis.from_url(REDIS_URL)
        # Only this run's keys: never FLUSHDB on a shared Redis.
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i : i + 500])
        print(f"dropped {dbname} and {len(keys)} Redis keys", flush=True)


# --- Child: the measurements ---------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def write_paths(iterations: int) -> tuple[dict[str, dict[str, Any]], list[float], list[float]]:
    """Every write path `iterations` times; per path {count, stale}, and the latencies (ms)."""
    import threading

    from django.db import connection, transaction

    from connectors import cache, selectors
    from connectors.cache import InvalidationListener
    from connectors.consistency import TABLE, quiet_cache_logs, seed_users
    from connectors.models import PlatformConnection

    provider = "github"
    users = seed_users(50, [provider])
    listener = InvalidationListener(poll_seconds=0.2, log=lambda line: None)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    assert listener.listening.wait(10), "the NOTIFY listener did not start"
    txns = 0  # write transactions so far: each sends exactly one notification (one user)
    results: dict[str, dict[str, Any]] = {}
    commit_ms: list[float] = []
    notify_ms: list[float] = []

    def settle() -> None:
        # Wait until the listener has handled every notification sent so far, so that a late
        # one cannot evict the entry the next step primes (and be mistaken for its own).
        deadline = time.monotonic() + 5
        while listener.stats.invalidations + listener.stats.bad_payloads < txns:
            if time.monotonic() > deadline:
                raise RuntimeError("the listener fell behind by more than 5 s")
            time.sleep(0.0005)

    def prime(user: str) -> None:
        settle()
        selectors.platform_status_for_user(user_id=user)

    def expect(path: str, user: str) -> None:
        row = (
            PlatformConnection.objects.filter(user_id=user, provider=provider)
            .values_list("version", flat=True)
            .first()
        )
        seen = selectors.platform_status_for_user(user_id=user).data["platforms"][provider]
        entry = results.setdefault(path, {"count": 0, "stale": 0})
        entry["count"] += 1
        if seen["version"] != (row or 0) or (row is None and seen["status"] != "not_connected"):
            entry["stale"] += 1

    def orm(path: str, user: str, write: Any) -> None:
        nonlocal txns
        prime(user)
        marks: dict[str, float] = {}
        with transaction.atomic():
            # Registered first, so it runs first after COMMIT; the last one runs after the
            # write's own invalidation callbacks.
            transaction.on_commit(lambda: marks.__setitem__("commit", time.perf_counter()))
            write()
            transaction.on_commit(lambda: marks.__setitem__("done", time.perf_counter()))
        txns += 1
        commit_ms.append((marks["done"] - marks["commit"]) * 1000)
        if cache.get_cached_platform_status(user) is not None:
            results.setdefault(path, {"count": 0, "stale": 0}).setdefault("not_invalidated", 0)
            results[path]["not_invalidated"] += 1
        expect(path, user)

    def raw(user: str) -> None:
        nonlocal txns
        prime(user)
        if cache.get_cached_platform_status(user) is None:
            raise RuntimeError("priming did not fill the cache")
        with connection.cursor() as cur:  # autocommit: committed when execute returns
            cur.execute(
                f"UPDATE {TABLE} SET last_sync_status = 'success' "  # noqa: S608
                "WHERE user_id = %s AND provider = %s",
                [user, provider],
            )
        committed = time.perf_counter()
        txns += 1
        while cache.get_cached_platform_status(user) is not None:
            if time.perf_counter() - committed > 2:
                raise RuntimeError("the listener did not invalidate within 2 s")
            time.sleep(0.0002)
        notify_ms.append((time.perf_counter() - committed) * 1000)
        expect("raw SQL via Django cursor (NOTIFY listener)", user)

    def row(user: str) -> PlatformConnection:
        return PlatformConnection.objects.get(user_id=user, provider=provider)

    with quiet_cache_logs():
        for i in range(iterations):
            u = users[i % len(users)]
            status = ("running", "success", "failed")[i % 3]

            def save_update(u: str = u, status: str = status) -> None:
                obj = row(u)
                obj.last_sync_status = status
                obj.save()

            def bulk_update(u: str = u) -> None:
                obj = row(u)
                obj.last_sync_status = "pending"
                PlatformConnection.objects.bulk_update([obj], ["last_sync_status"])

            orm("Model.save (update)", u, save_update)
            orm(
                "QuerySet.update",
                u,
                lambda u=u: PlatformConnection.objects.filter(user_id=u, provider=provider).update(
                    last_sync_status="running"
                ),
            )
            orm("QuerySet.bulk_update", u, bulk_update)
            raw(u)
            orm("Model.delete", u, lambda u=u: row(u).delete())
            orm(
                "QuerySet.bulk_create",
                u,
                lambda u=u: PlatformConnection.objects.bulk_create(
                    [PlatformConnection(user_id=u, provider=provider)]
                ),
            )
            orm(
                "QuerySet.delete",
                u,
                lambda u=u: PlatformConnection.objects.filter(
                    user_id=u, provider=provider
                ).delete(),
            )
            orm(
                "Model.save (insert)",
                u,
                lambda u=u: PlatformConnection.objects.create(user_id=u, provider=provider),
            )
    listener.stop()
    thread.join(5)
    return results, commit_ms, notify_ms


def child(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectors_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from connectors import consistency

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    failures: list[str] = []

    config = consistency.WorkloadConfig(
        operations=args.ops,
        readers=args.readers,
        writers=args.writers,
        users=args.users,
        write_delay_ms=args.delay_ms,
        fill_delay_ms=args.delay_ms,
        max_seconds=args.max_seconds,
    )
    users = consistency.seed_users(config.users, consistency.providers_for(config))
    print(
        f"\n1. Register workload: {config.readers} readers, {config.writers} writers, "
        f"{config.users} users (Zipf s={config.zipf_s}), delays 0-{args.delay_ms:g} ms",
        flush=True,
    )
    reports = {}
    for mode in ("service", "naive"):
        reports[mode] = consistency.run_workload(config, users, mode)
        print("   " + reports[mode].summary(), flush=True)
    print(
        f"\n   {'mode':<8} {'ops':>9} {'reads':>9} {'writes':>8} {'violations':>11} "
        f"{'max staleness':>14}"
    )
    for mode, rep in reports.items():
        print(
            f"   {mode:<8} {rep.operations:>9,} {rep.reads:>9,} {rep.writes:>8,} "
            f"{len(rep.violations):>11,} {rep.max_staleness_ms:>11.1f} ms"
        )
    if reports["service"].violations:
        failures.append("service mode has violations")
    if not reports["naive"].violations:
        failures.append("naive mode has no violations: the checker proved nothing")
    if reports["service"].operations < args.ops:
        failures.append(
            f"service mode stopped at {reports['service'].operations:,} operations "
            f"(--max-seconds {args.max_seconds:g})"
        )

    print(f"\n2. Write paths, {args.paths:,} times each, each followed by a read", flush=True)
    paths, commit_ms, notify_ms = write_paths(args.paths)
    print(f"   {'path':<46} {'writes':>7} {'stale reads':>12} {'not invalidated':>16}")
    for path, r in paths.items():
        print(
            f"   {path:<46} {r['count']:>7,} {r['stale']:>12,} {r.get('not_invalidated', 0):>16,}"
        )
        if r["stale"] or r.get("not_invalidated"):
            failures.append(f"{path}: stale reads after the write")
    print("   (FK cascades: none exist, no model references PlatformConnection)")
    print(
        f"   commit-to-invalidated, on_commit ({len(commit_ms):,}): p50 {pct(commit_ms, 0.5):.2f} ms,"
        f" p99 {pct(commit_ms, 0.99):.2f} ms, max {max(commit_ms):.2f} ms (target p99 <= 20 ms)"
    )
    print(
        f"   commit-to-invalidated, NOTIFY listener ({len(notify_ms):,}): p50 "
        f"{pct(notify_ms, 0.5):.2f} ms, p99 {pct(notify_ms, 0.99):.2f} ms, max "
        f"{max(notify_ms):.2f} ms (target p99 <= 100 ms)"
    )
    if pct(commit_ms, 0.99) > 20:
        failures.append("on_commit p99 above 20 ms")
    if pct(notify_ms, 0.99) > 100:
        failures.append("NOTIFY p99 above 100 ms")

    print(
        f"\n3. Cold burst: {args.bursts} x 100 readers released together on an uncached user",
        flush=True,
    )
    bursts = []
    for _ in range(args.bursts):
        [user] = consistency.seed_users(1, ["github", "spotify"])
        bursts.append(consistency.cold_burst(user, readers=100))
    worst = max(b.queries for b in bursts)
    print(
        f"   DB queries per burst: {[b.queries for b in bursts]}; correct answers "
        f"{sum(b.answers for b in bursts):,}/{100 * len(bursts):,}; max latency "
        f"{max(b.max_latency_ms for b in bursts):.0f} ms"
    )
    if worst != 1 or any(b.answers != 100 for b in bursts):
        failures.append("cold burst: more than one query or a wrong answer")

    print(
        f"\n4. Hot key: {args.hot_seconds:g} s of steady reads, TTL {args.hot_ttl:g} s", flush=True
    )
    [hot_user] = consistency.seed_users(1, ["github"])
    hot = consistency.hot_key(hot_user, seconds=args.hot_seconds, ttl_seconds=args.hot_ttl)
    print(f"   {hot.fills} fills in {hot.windows} TTL windows, {hot.reads:,} reads")
    if hot.fills_per_window > 1.2:
        failures.append("hot key refilled more than 1.2 times per TTL window")

    print(f"\nTotal {time.perf_counter() - started:.0f} s.")
    for failure in failures:
        print(f"FAILED: {failure}")
    print(f"violations (service mode): {len(reports['service'].violations)}")
    print(f"violations (naive mode): {len(reports['naive'].violations)}")
    print(f"operations: {sum(r.operations for r in reports.values())}")
    print(f"cold burst DB queries: {worst}")
    print(f"fills per TTL window (hot key): {hot.fills_per_window:.2f}")
    return 1 if failures else 0


def main() -> int:
    args = parse_args()
    if os.environ.get(CHILD_FLAG):
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
