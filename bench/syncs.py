"""Sync throughput: items/s for 1 and for N workers against a provider `--latency` away.

A stand-in GitHub API (tests/support/providers.py) answers every page after `--latency`
seconds; `--jobs` users each have `--items` repositories. For each worker count the script
starts the workers, lets them settle, queues every job, and times until the last one finished.
Uses its own Postgres database (created, then dropped) and, with --redis-url, that Redis.

    .venv/bin/python -m bench.syncs --workers 1,4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid
from typing import Any

from bench.harness.env import PY, ROOT, app_env, make_log, make_secrets
from bench.harness.postgres import (
    SHARED_ADMIN_URL,
    create_database,
    database_url,
    drop_database,
)
from tests.support.procs import sh, stop_process

log = make_log("syncs")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--admin-database-url", default=SHARED_ADMIN_URL)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()

    name = f"connectors_bench_syncs_{os.getpid()}"
    create_database(args.admin_database_url, name)
    env = app_env(
        database_url=database_url(args.admin_database_url, name),
        redis_url=args.redis_url or None,
        prefix=f"bench-syncs-{os.getpid()}",
        secret_env=make_secrets(),
    ) | {"CACHE_OUTBOX_SWEEP_SECONDS": "0"}
    try:
        sh([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env)
        from tests.support.providers import FakeProviders

        with FakeProviders(page_size=args.page_size, latency=args.latency) as fake:
            env |= fake.env()
            os.environ.update(env)
            import django

            django.setup()
            results = [run(fake, env, int(n), args) for n in args.workers.split(",")]
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.admin_database_url, name)
    pages = -(-args.items // args.page_size)
    print(
        f"\n{args.jobs} jobs x {args.items} items ({pages} pages of {args.page_size}), "
        f"provider {args.latency * 1000:.0f} ms away"
    )
    print("| workers | seconds | items/s | jobs/s |")
    print("| --- | --- | --- | --- |")
    for workers, seconds in results:
        items = args.jobs * args.items
        print(f"| {workers} | {seconds:.2f} | {items / seconds:,.0f} | {args.jobs / seconds:.1f} |")


def run(
    fake: Any, env: dict[str, str], workers: int, args: argparse.Namespace
) -> tuple[int, float]:
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
    command = [PY, "manage.py", "run_worker", "--no-reload", "--interval", "0.05"]
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
