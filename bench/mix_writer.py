"""The side writer of `make bench`'s realistic mix (`python -m bench.mix_writer USERS_FILE
RATE_PER_S SECONDS ZIPF_S`, started by bench/run_measure.py next to wrk).

Writes the API cannot make without OAuth, through the service's ORM (so its own invalidation
runs, after commit), at a fixed rate: a reconnect (QuerySet.update of the user's inactive rows)
or a sync status (services.connection_set_sync_status), one transaction each, users drawn by
wrk's Zipf law. Prints `READY` once Django is loaded, then one line `BENCH_JSON {...}` with the
counts and how many passes this process's outbox sweeper made (one transaction each).
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import sys
import time


def main() -> None:
    users_file, rate, seconds, zipf_s = (
        sys.argv[1],
        float(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.utils import timezone

    from connectors import services
    from connectors.cache import outbox
    from connectors.models import ConnectionStatus, PlatformConnection, SyncStatus
    from connectors.providers import PROVIDERS

    print("READY", flush=True)  # bench/run.py starts wrk once Django is loaded here
    with open(users_file) as f:
        users = [line.strip() for line in f if line.strip()]
    cdf = list(itertools.accumulate(1 / (k**zipf_s) for k in range(1, len(users) + 1)))
    rng = random.Random(1234)
    providers = list(PROVIDERS)
    counts = {"writes": 0, "reconnect_ok": 0, "sync_ok": 0, "noop": 0, "errors": 0}
    started = time.monotonic()
    interval = 1.0 / rate if rate > 0 else seconds
    next_at = started
    while time.monotonic() - started < seconds:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        user = users[bisect.bisect_left(cdf, rng.random() * cdf[-1])]
        counts["writes"] += 1
        try:
            if counts["writes"] % 2:
                changed = PlatformConnection.objects.filter(user_id=user, is_active=False).update(
                    is_active=True,
                    status=ConnectionStatus.CONNECTED,
                    connected_at=timezone.now(),
                    updated_at=timezone.now(),
                )
                counts["reconnect_ok" if changed else "noop"] += 1
            else:
                done = services.connection_set_sync_status(
                    user_id=user,
                    provider=rng.choice(providers),
                    sync_status=rng.choice(
                        [SyncStatus.RUNNING, SyncStatus.SUCCESS, SyncStatus.FAILED]
                    ),
                )
                counts["sync_ok" if done else "noop"] += 1
        except Exception as e:  # keep writing; report
            counts["errors"] += 1
            print(f"mix_writer: {type(e).__name__}: {e}", file=sys.stderr)
    # Its outbox sweeper's passes (a transaction each, whatever the traffic): background, as
    # the idle server's are (bench/run.py nets both out).
    counts["sweeps"] = outbox.sweeper.passes
    print("BENCH_JSON " + json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
