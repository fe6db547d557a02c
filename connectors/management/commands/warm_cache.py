from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.template.defaultfilters import pluralize
from django.utils import timezone

from connectors import logs, selectors
from connectors.management.options import add_user_option, require_cache, user_ids_from
from connectors.models import PlatformConnection


def users_to_warm(*, user_ids: list[str] | None, active_since_days: int | None) -> list[str]:
    if user_ids:
        return user_ids
    queryset = PlatformConnection.objects.active()
    if active_since_days is not None:
        queryset = queryset.filter(
            updated_at__gte=timezone.now() - timedelta(days=active_since_days)
        )
    return [str(u) for u in queryset.order_by().values_list("user_id", flat=True).distinct()]


def warm(user_ids: list[str], progress: Any = None) -> tuple[int, int]:
    """Read every user through the cache; returns (filled, already cached)."""
    filled = already = 0
    for index, user_id in enumerate(user_ids, 1):
        result = selectors.platform_status_for_user(user_id=user_id)
        if result.cached:
            already += 1
        else:
            filled += 1
        if progress and (index % 500 == 0 or index == len(user_ids)):
            progress(index, len(user_ids))
    return filled, already


class Command(BaseCommand):
    help = "Load users' platform status into the cache ahead of their first request."

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_option(parser, help="Warm this user (repeatable). Default: every active user.")
        parser.add_argument(
            "--active-since",
            type=int,
            metavar="DAYS",
            help="Only users whose connections changed in the last DAYS days.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_cache(nothing_to="warm")
        started = time.perf_counter()
        user_ids = users_to_warm(
            user_ids=user_ids_from(options["users"]), active_since_days=options["active_since"]
        )
        # One summary, not the cache layer's MISS line per user (-v 2 keeps those).
        with logs.quiet("connectors.cache") if options["verbosity"] < 2 else nullcontext():
            filled, already = warm(
                user_ids, progress=lambda i, n: self.stdout.write(f"  {i:,}/{n:,} users")
            )
        n = len(user_ids)
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Warmed {n:,} user{pluralize(n)} in {time.perf_counter() - started:.1f} s "
                f"({filled:,} filled, {already:,} already cached)."
            )
        )
