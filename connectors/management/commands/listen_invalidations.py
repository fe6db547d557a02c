from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import pluralize

from connectors.cache import (
    InvalidationListener,
    ListenerStats,
    ListenerUnsupported,
    conninfo_from_settings,
)
from connectors.management.options import require_cache


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
        require_cache(nothing_to="invalidate")
        listener = InvalidationListener(
            backoff_max=options["max_backoff"],
            log=lambda line: self.stdout.write(line),
        )
        started = time.perf_counter()

        def stop(signum: int, frame: FrameType | None) -> None:
            # systemd, Docker and Kubernetes stop a service with SIGTERM: finish the current
            # poll (at most half a second), print the summary, exit 0.
            listener.stop()

        # Signal handlers belong to the main thread (tests run the command in another one).
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, stop) if in_main else None
        try:
            stats = listener.run(
                max_seconds=options["max_seconds"],
                max_notifications=1 if options["once"] else None,
            )
        except ListenerUnsupported as e:
            raise CommandError(str(e)) from e
        except KeyboardInterrupt:
            stats = listener.stats
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        self.stdout.write(self.style.SUCCESS(summary(stats, time.perf_counter() - started)))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{pluralize(n)}"


def summary(stats: ListenerStats, seconds: float) -> str:
    return (
        f"Done! {_count(stats.notifications, 'notification')}, "
        f"{_count(stats.invalidations, 'invalidation')}, "
        f"{_count(stats.resyncs, 'outbox replay')}, "
        f"{_count(stats.epoch_bumps, 'epoch bump')} ({_count(stats.epoch_keys, 'key')}), "
        f"{_count(stats.failures, 'connection failure')} in {seconds:.2f} s."
    )
