from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.errors import UnknownProvider
from extraction import services


class Command(BaseCommand):
    help = "Queue a sync for every active connection whose last sync is older than --older-than."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=float, required=True, metavar="HOURS", help="Hours (e.g. 6)."
        )
        parser.add_argument("--provider", help="Only this provider (default: all).")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Connections per transaction."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours, batch_size = options["older_than"], options["batch_size"]
        if not 0 <= hours <= 24 * 3650:
            raise CommandError("--older-than must be between 0 and 87600 hours.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        started = time.perf_counter()
        try:
            result = services.extraction_syncs_schedule(
                older_than=timedelta(hours=hours),
                provider=options["provider"],
                batch_size=batch_size,
            )
        except UnknownProvider as e:
            raise CommandError(e.message) from e
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Queued {result.enqueued:,} syncs in {time.perf_counter() - started:.1f} s "
                f"({result.already_active:,} already queued or running, "
                f"{result.gone:,} disconnected meanwhile)."
            )
        )
