"""Sync throughput: items/s for 1 and for N workers against a provider `--latency` away.

A stand-in GitHub API (tests/support/providers.py) answers every page after `--latency`
seconds; `--jobs` users each have `--items` repositories. For each worker count the script
starts the workers, lets them settle, queues every job, and times until the last one finished.
Uses its own Postgres database (dropped and created again) and, with --redis-url, that Redis.

    .venv/bin/python bench/syncs.py --workers 1,4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procs import environ_without_service_settings, make_log, sh, stop_process  # noqa: E402

log = make_log("extraction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/connectors_bench_syncs"
    )
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()

    db = urlsplit(args.database_url)
    name, admin = (
        db.path.lstrip("/"),
        ["-h", db.hostname or "127.0.0.1", "-U", db.username or "postgres"],
    )
    sh(["dropdb", "--if-exists", *admin, name])
    sh(["createdb", *admin, name])
    env = environ_without_service_settings() | {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 40,
        "SUPABASE_JWT_SECRET": "bench-" + "y" * 40,
        "TOKEN_ENCRYPTION_KEY": "l9tpR1P3hU6mZSXWbrmQOQxfSzOg0tx2dq8EHUaSShk=",
        "CACHE_KEY_PREFIX": f"bench-extraction-{os.getpid()}",
        "CACHE_OUTBOX_SWEEP_SECONDS": "0",
        "LOG_LEVEL": "warning",
    }
    sh([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env)

    from tests.support.providers import FakeProviders

    with FakeProviders(page_size=args.page_size, latency=args.latency) as fake:
        env |= fake.env()
        os.environ.update(env)
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectors_site.settings")
        django.setup()
        results = [run(fake, env, int(n), args) for n in args.workers.split(",")]
    pages = -(-args.items // args.page_size)
    print(
        f"\n{args.jobs} jobs x {args.items} items ({pages} pages of {args.page_size}), provider {args.latency * 1000:.0f} ms away"
    )
    print("| workers | seconds | items/s | jobs/s |")
    print("| --- | --- | --- | --- |")
    for workers, seconds in results:
        items = args.jobs * args.items
        print(f"| {workers} | {seconds:.2f} | {items / seconds:,.0f} | {args.jobs / seconds:.1f} |")


def run(fake, env: dict[str, str], workers: int, args: argparse.Namespace) -> tuple[int, float]:
    import uuid

    from connectors.models import PlatformConnection
    from extraction import services
    from extraction.models import ExtractedItem, ExtractionJob

    ExtractedItem.objects.all().delete()
    ExtractionJob.objects.all().delete()
    PlatformConnection.objects.all().delete()
    users = []
    for _ in range(args.jobs):
        account = fake.account("github", items=args.items)
        user_id = str(uuid.uuid4())
        PlatformConnection.objects.create(
            user_id=user_id, provider="github", access_token=account.access_token,
            refresh_token=account.refresh_token, status="connected", is_active=True,
        )  # fmt: skip
        users.append(user_id)
    command = [sys.executable, "manage.py", "run_worker", "--no-reload", "--interval", "0.05"]
    procs = [
        subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]  # fmt: skip
    try:
        time.sleep(3 + workers)  # Django start-up and db_worker's random start delay
        started = time.perf_counter()
        for user_id in users:
            services.extraction_job_create(user_id=user_id, provider="github")
        deadline = time.monotonic() + 600
        while ExtractionJob.objects.exclude(status__in=["succeeded", "failed"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish within 10 minutes")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            stop_process(proc)
    failed = ExtractionJob.objects.filter(status="failed").count()
    stored = ExtractedItem.objects.count()
    log(f"{workers} worker(s): {elapsed:.2f} s, {stored:,} items stored, {failed} failed jobs")
    if failed or stored != args.jobs * args.items:
        raise RuntimeError(f"{failed} failed jobs, {stored} items stored")
    return workers, elapsed


if __name__ == "__main__":
    main()
