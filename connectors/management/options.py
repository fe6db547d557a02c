"""What the cache commands share: the repeatable --user option and the "caching is off" refusal."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from connectors import cache
from connectors.errors import InvalidUserId
from connectors.ids import normalize_user_id


def add_user_option(parser: CommandParser, *, help: str) -> None:
    parser.add_argument("--user", action="append", dest="users", metavar="UUID", help=help)


def user_ids_from(values: list[str] | None) -> list[str]:
    """The --user values, canonical; CommandError for anything that is not a UUID."""
    try:
        return [normalize_user_id(value) for value in values or []]
    except InvalidUserId as e:
        raise CommandError(e.message) from e


def require_cache(*, nothing_to: str) -> None:
    if not cache.enabled():
        raise CommandError(f"Caching is off (no REDIS_URL): there is nothing to {nothing_to}.")
