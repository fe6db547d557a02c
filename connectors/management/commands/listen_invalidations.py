from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors import cache
from connectors.cache import InvalidationListener, ListenerUnsupported, conninfo_from_settings


class Command(BaseCommand):
    help = (
        "Invalidate cached statuses on Postgres NOTIFY, for writes Django does not see "
        "(raw SQL, other services); run one per deployment, never through a transaction pooler."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Exit after handling one notification."
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=None,
            metavar="S",
            help="Exit after S seconds (default: run until interrupted).",
        )
        parser.add_argument(
            "--max-backoff",
            type=float,
            default=10.0,
            metavar="S",
            help="Longest wait between reconnection attempts (default 10).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            conninfo_from_settings()
        except ListenerUnsupported as e:
            raise CommandError(str(e)) from e
        if not cache.enabled():
            raise CommandError("Caching is off (no REDIS_URL): there is nothing to invalidate.")
        listener = InvalidationListener(
            backoff_max=options["max_backoff"],
            log=lambda line: self.stdout.write(line),
        )
        started = time.perf_counter()
        try:
            stats = listener.run(
                max_seconds=options["max_seconds"],
                max_notifications=1 if options["once"] else None,
            )
        except ListenerUnsupported as e:
            raise CommandError(str(e)) from e
        except KeyboardInterrupt:
            stats = listener.stats
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! {stats.notifications:,} notifications, {stats.invalidations:,} "
                f"invalidations, {stats.resyncs:,} outbox replays, {stats.epoch_bumps:,} epoch "
                f"bumps ({stats.epoch_keys:,} keys), {stats.failures:,} connection failures in "
                f"{time.perf_counter() - started:.2f} s."
            )
        )
