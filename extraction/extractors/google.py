"""Google Calendar (GET /calendar/v3/calendars/primary/events) and YouTube
(GET /youtube/v3/subscriptions?mine=true&part=snippet): both paged by `pageToken` /
`nextPageToken`, both reporting limits as JSON errors.

403 `rateLimitExceeded` / `userRateLimitExceeded` (and 429) are short-term: wait and retry.
403 `quotaExceeded` / `dailyLimitExceeded` is the project's daily quota, which Google resets at
midnight Pacific Time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from connectors.outbound import Response
from extraction.extractors.base import (
    DEFAULT_THROTTLE_SECONDS,
    Extractor,
    Item,
    Page,
    external_id,
    pick,
    retry_after,
)

_SHORT_TERM = {"rateLimitExceeded", "userRateLimitExceeded"}
_DAILY = {"quotaExceeded", "dailyLimitExceeded"}
_PACIFIC = ZoneInfo("America/Los_Angeles")


def error_reasons(response: Response) -> set[str]:
    try:
        errors = json.loads(response.body)["error"]["errors"]
        return {e["reason"] for e in errors if isinstance(e, dict) and "reason" in e}
    except (ValueError, KeyError, TypeError):
        return set()


def seconds_to_pacific_midnight(now: datetime) -> float:
    local = now.astimezone(_PACIFIC)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, (midnight - local).total_seconds())


class _Google(Extractor):
    params: dict[str, str]

    def page_url(self, base: str, cursor: str | None) -> str:
        params = dict(self.params)
        if cursor:
            params["pageToken"] = cursor
        return f"{base}{self.path}?{urlencode(params)}"

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        if response.status not in (403, 429):
            return None
        reasons = error_reasons(response)
        if reasons & _DAILY:
            return seconds_to_pacific_midnight(now)
        if response.status == 429 or reasons & _SHORT_TERM:
            return retry_after(response, now) or DEFAULT_THROTTLE_SECONDS
        return None

    def _page(self, response: Response) -> tuple[list[dict[str, object]], dict[str, object]]:
        body = self.json(response, dict)
        entries = body.get("items", [])
        if not isinstance(entries, list):
            raise self.unreadable()
        return [e for e in entries if isinstance(e, dict) and "id" in e], body


class GoogleCalendar(_Google):
    provider = "google_calendar"
    kind = "event"
    path = "/calendar/v3/calendars/primary/events"
    params = {"maxResults": "250", "singleEvents": "true"}

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        events, body = self._page(response)
        items = [
            Item(
                external_id(e["id"]),
                pick(e, "status", "summary", "start", "end", "updated", "htmlLink"),
            )
            for e in events
        ]
        return Page(items, self.token(body.get("nextPageToken")))


class YouTube(_Google):
    provider = "youtube"
    kind = "subscription"
    path = "/youtube/v3/subscriptions"
    params = {"mine": "true", "part": "snippet", "maxResults": "50"}

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        subscriptions, body = self._page(response)
        items = []
        for entry in subscriptions:
            snippet = entry.get("snippet")
            snippet = snippet if isinstance(snippet, dict) else {}
            resource = snippet.get("resourceId")
            channel = resource.get("channelId") if isinstance(resource, dict) else None
            items.append(
                Item(
                    external_id(entry["id"]),
                    {**pick(snippet, "title", "publishedAt"), "channel_id": channel},
                )
            )
        info = body.get("pageInfo")
        total = info.get("totalResults") if isinstance(info, dict) else None
        return Page(
            items,
            self.token(body.get("nextPageToken")),
            total=total if isinstance(total, int) and total > 0 else None,
        )
