"""LinkedIn: GET /v2/userinfo (OpenID Connect), one document, no pages.

LinkedIn publishes no quota headers; its daily limits reset at midnight UTC, and a spent one
is a 429.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connectors.outbound import Response
from extraction.extractors.base import Extractor, Item, Page, external_id, pick, retry_after


class LinkedIn(Extractor):
    provider = "linkedin"
    kind = "profile"
    path = "/v2/userinfo"

    def page_url(self, base: str, cursor: str | None) -> str:
        return f"{base}{self.path}"

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        profile = self.json(response, dict)
        if not isinstance(profile.get("sub"), str):
            raise self.unreadable()
        fields = pick(profile, "name", "given_name", "family_name", "picture", "locale", "email")
        return Page([Item(external_id(profile["sub"]), fields)], None)

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        if response.status != 429:
            return None
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return retry_after(response, now) or max(1.0, (midnight - now).total_seconds())
