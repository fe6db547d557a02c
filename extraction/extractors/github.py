"""GitHub: GET /user/repos, pages in the Link header (rel="next", rel="last").

Quota: X-RateLimit-Remaining / X-RateLimit-Reset (epoch seconds). A spent primary limit is a
403 or 429 with X-RateLimit-Remaining: 0; a secondary limit carries Retry-After.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from connectors.outbound import Response
from extraction.extractors.base import (
    DEFAULT_THROTTLE_SECONDS,
    Extractor,
    Item,
    Page,
    Quota,
    epoch,
    external_id,
    number,
    pick,
    retry_after,
)

_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([a-z]+)"?')


def links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in _LINK.findall(header)}


def _page_number(url: str) -> int:
    values = parse_qs(urlsplit(url).query).get("page", ["1"])
    return int(values[0]) if values[0].isdigit() else 1


class GitHub(Extractor):
    provider = "github"
    kind = "repository"
    path = "/user/repos"

    def headers(self, access_token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def page_url(self, base: str, cursor: str | None) -> str:
        if cursor:
            return self.follow(base, cursor)
        return f"{base}{self.path}?per_page=100&sort=full_name"

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        repos = self.json(response, list)
        items = [
            Item(
                external_id(repo["id"]),
                pick(
                    repo,
                    "full_name",
                    "private",
                    "html_url",
                    "language",
                    "stargazers_count",
                    "updated_at",
                    "pushed_at",
                ),
            )
            for repo in repos
            if isinstance(repo, dict) and "id" in repo
        ]
        rels = links(response.headers.get("link", ""))
        next_url = self.follow(base, rels["next"]) if "next" in rels else None
        fraction = None
        if "last" in rels:
            fraction = _page_number(url) / max(1, _page_number(rels["last"]))
        return Page(items, next_url, fraction=fraction)

    def quota(self, response: Response, now: datetime) -> Quota | None:
        remaining = number(response.headers, "x-ratelimit-remaining")
        reset = number(response.headers, "x-ratelimit-reset")
        if remaining is None or reset is None:
            return None
        return Quota(int(remaining), epoch(reset))

    def throttled_for(self, response: Response, now: datetime) -> float | None:
        if response.status not in (403, 429):
            return None
        wait = retry_after(response, now)
        if wait is not None:
            return wait
        quota = self.quota(response, now)
        if quota is not None and quota.remaining <= 0:
            return max(1.0, (quota.reset_at - now).total_seconds())
        # A 403 without rate-limit signs is a refusal (scope, SSO), not a throttle.
        return DEFAULT_THROTTLE_SECONDS if response.status == 429 else None
