"""Discord: GET /api/v10/users/@me/guilds, paged with `after` (the last guild id) and `limit`
(at most 200; a shorter page is the last).

Quota: X-RateLimit-Remaining with X-RateLimit-Reset-After (seconds) or X-RateLimit-Reset
(epoch); a 429 carries `retry_after` (seconds) in its JSON body.
"""

from __future__ import annotations

import json
from datetime import datetime

from connectors.outbound import Response
from extraction.extractors.base import (
    DEFAULT_THROTTLE_SECONDS,
    Extractor,
    Item,
    Page,
    Quota,
    after,
    epoch,
    external_id,
    number,
    pick,
    retry_after,
)

LIMIT = 200


class Discord(Extractor):
    provider = "discord"
    kind = "guild"
    path = "/api/v10/users/@me/guilds"

    def page_url(self, base: str, cursor: str | None) -> str:
        url = f"{base}{self.path}?limit={LIMIT}"
        if cursor:
            if not cursor.isdigit():
                raise self.unreadable()
            url += f"&after={cursor}"
        return url

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        guilds = [g for g in self.json(response, list) if isinstance(g, dict) and "id" in g]
        items = [
            Item(external_id(g["id"]), pick(g, "name", "icon", "owner", "permissions"))
            for g in guilds
        ]
        last = str(guilds[-1]["id"]) if guilds else ""
        more = len(guilds) >= LIMIT and last.isdigit()
        return Page(items, last if more else None)

    def quota(self, response: Response, now: datetime) -> Quota | None:
        remaining = number(response.headers, "x-ratelimit-remaining")
        if remaining is None:
            return None
        reset_after = number(response.headers, "x-ratelimit-reset-after")
        if reset_after is not None:
            return Quota(int(remaining), after(now, reset_after))
        reset = number(response.headers, "x-ratelimit-reset")
        return Quota(int(remaining), epoch(reset)) if reset is not None else None

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        if response.status != 429:
            return None
        try:
            seconds = json.loads(response.body).get("retry_after")
        except (ValueError, AttributeError):
            seconds = None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            return max(1.0, float(seconds))
        return retry_after(response, now) or DEFAULT_THROTTLE_SECONDS
