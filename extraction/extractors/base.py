"""What every extractor provides, and the parsing helpers they share.

An extractor knows one provider's endpoint: the URL of each page, how to read a page (items,
the next cursor, how far along it is), the remaining-quota headers, and what a throttled answer
looks like. It never sends a request itself (extraction.session does) and never shows provider
text to the user.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from connectors.outbound import Response
from connectors.providers import get_provider
from extraction.errors import SyncFailed

DEFAULT_THROTTLE_SECONDS = 60.0
_MAX_ID_LENGTH = 255
_MAX_CURSOR_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Item:
    external_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    next_cursor: str | None
    # How far along the sync is, when the provider says: a fraction of pages, or a total count.
    fraction: float | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """The provider's remaining requests until `reset_at`."""

    remaining: int
    reset_at: datetime


class Extractor:
    provider: ClassVar[str]
    kind: ClassVar[str]
    path: ClassVar[str]

    @property
    def display_name(self) -> str:
        return get_provider(self.provider).display_name

    def headers(self, access_token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}

    def page_url(self, base: str, cursor: str | None) -> str:
        raise NotImplementedError

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        raise NotImplementedError

    def quota(self, response: Response, now: datetime) -> Quota | None:
        return None

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        """Seconds to wait if `response` says the quota is spent, else None."""
        if response.status == 429:
            return retry_after(response, now) or DEFAULT_THROTTLE_SECONDS
        return None

    # --- helpers for subclasses ---------------------------------------------------------
    def unreadable(self) -> SyncFailed:
        return SyncFailed(f"{self.display_name} sent a page this service cannot read.")

    def json(self, response: Response, expected: type) -> Any:
        try:
            payload = response.json()
        except ValueError as e:
            raise self.unreadable() from e
        if not isinstance(payload, expected):
            raise self.unreadable()
        return payload

    def follow(self, base: str, url: object) -> str:
        """A next-page URL from the provider, only if it stays under our API root: the access
        token goes with it, so it must never be sent to another host."""
        if not isinstance(url, str) or len(url) > _MAX_CURSOR_LENGTH:
            raise self.unreadable()
        root, target = urlsplit(base), urlsplit(url)
        if (
            (target.scheme, target.netloc) != (root.scheme, root.netloc)
            or not target.path.startswith(root.path + self.path)
            or target.username is not None
        ):
            raise SyncFailed(
                f"{self.display_name}'s next-page link leads outside its API; the sync stopped."
            )
        return url

    def token(self, value: object) -> str | None:
        """An opaque page token or id from the provider (None: no more pages)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > _MAX_CURSOR_LENGTH:
            raise self.unreadable()
        return value


def external_id(value: object) -> str:
    text = str(value)
    if len(text) > _MAX_ID_LENGTH:
        return hashlib.sha256(text.encode()).hexdigest()
    return text


def pick(source: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {field: source.get(field) for field in fields if field in source}


def number(headers: dict[str, str], name: str) -> float | None:
    try:
        value = float(headers[name])
    except (KeyError, ValueError):
        return None
    return value if value == value and abs(value) < 1e12 else None  # no NaN, no absurd values


def retry_after(response: Response, now: datetime) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    seconds = number({"v": raw}, "v")
    if seconds is None:
        try:
            seconds = (parsedate_to_datetime(raw) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(1.0, seconds)


def epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=max(0.0, seconds))
