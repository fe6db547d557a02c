"""Reddit: GET /subreddits/mine/subscriber, a Listing paged with `after` (a t5_ fullname).

Quota: X-Ratelimit-Remaining (a float) and X-Ratelimit-Reset (seconds until the window ends);
over it, a 429. Reddit wants a descriptive User-Agent.
"""

from __future__ import annotations

import re
from datetime import datetime

from connectors.outbound import Response
from extraction.extractors.base import (
    DEFAULT_THROTTLE_SECONDS,
    Extractor,
    Item,
    Page,
    Quota,
    after,
    external_id,
    number,
    pick,
    retry_after,
)

_FULLNAME = re.compile(r"t5_[0-9a-z]{1,32}")


class Reddit(Extractor):
    provider = "reddit"
    kind = "subreddit"
    path = "/subreddits/mine/subscriber"

    def headers(self, access_token: str) -> dict[str, str]:
        return {
            "Authorization": f"bearer {access_token}",
            "Accept": "application/json",
            "User-Agent": "server:connectors-service:1.0",
        }

    def page_url(self, base: str, cursor: str | None) -> str:
        url = f"{base}{self.path}?limit=100&raw_json=1"
        if cursor:
            if not _FULLNAME.fullmatch(cursor):
                raise self.unreadable()
            url += f"&after={cursor}"
        return url

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        listing = self.json(response, dict)
        data = listing.get("data")
        children = data.get("children") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(children, list):
            raise self.unreadable()
        items = []
        for child in children:
            sub = child.get("data") if isinstance(child, dict) else None
            if isinstance(sub, dict) and isinstance(sub.get("name"), str):
                fields = pick(sub, "display_name", "title", "url", "subscribers", "over18")
                items.append(Item(external_id(sub["name"]), fields))
        cursor = data.get("after")
        if cursor is not None and not (isinstance(cursor, str) and _FULLNAME.fullmatch(cursor)):
            raise self.unreadable()
        return Page(items, cursor or None)

    def quota(self, response: Response, now: datetime) -> Quota | None:
        remaining = number(response.headers, "x-ratelimit-remaining")
        reset = number(response.headers, "x-ratelimit-reset")
        if remaining is None or reset is None:
            return None
        return Quota(int(remaining), after(now, reset))

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        if response.status != 429:
            return None
        wait = retry_after(response, now) or number(response.headers, "x-ratelimit-reset")
        return max(1.0, wait) if wait is not None else DEFAULT_THROTTLE_SECONDS
