from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import pluralize

from connectors import cache
from connectors.errors import CacheUnavailable
from connectors.management.options import add_user_option, require_cache, user_ids_from


def clear(user_ids: list[str] | None) -> int:
    if user_ids:
        return sum(cache.clear_user(u) for u in user_ids)
    return cache.clear_all()


class Command(BaseCommand):
    help = "Delete this deployment's cache keys (by prefix; never FLUSHDB or FLUSHALL)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_option(parser, help="Only this user's keys (repeatable).")

    def handle(self, *args: Any, **options: Any) -> None:
        require_cache(nothing_to="clear")
        started = time.perf_counter()
        user_ids = user_ids_from(options["users"])
        try:
            deleted = clear(user_ids or None)
        except CacheUnavailable as e:
            raise CommandError(str(e)) from e
        scope = (
            f"{len(user_ids):,} user{pluralize(len(user_ids))}"
            if user_ids
            else f"prefix {settings.CACHE_KEY_PREFIX!r}"
        )
        elapsed = time.perf_counter() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Deleted {deleted:,} key{pluralize(deleted)} for {scope} in {elapsed:.2f} s."
            )
        )
