"""What each provider's API answers, modelled on its documentation: the page bodies and their
pagination, the rate-limit headers, and the bodies of 401, 429 and quota errors.

Every function takes the account's item count, the request's query and the API root it was
called under, and returns (status, headers, body). Error bodies carry PROVIDER_TEXT so tests can
check that no provider text ever reaches a user.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

PROVIDER_TEXT = "provider-text-7f3a"
Answer = tuple[int, dict[str, str], Any]
Query = dict[str, str]
_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _int(query: Query, name: str, default: int, cap: int) -> int:
    value = query.get(name, "")
    return max(1, min(cap, int(value))) if value.isdigit() else default


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.urlsafe_b64decode(token.encode()).decode().split(":")[1])


def github(items: int, query: Query, root: str, page_size: int) -> Answer:
    per_page = min(_int(query, "per_page", 30, 100), page_size)
    page = _int(query, "page", 1, 10**6)
    start = (page - 1) * per_page
    repos = [
        {
            "id": 100_000 + i,
            "full_name": f"octocat/repo-{i}",
            "private": i % 2 == 0,
            "html_url": f"https://github.com/octocat/repo-{i}",
            "language": "Python",
            "stargazers_count": i,
            "updated_at": "2026-01-01T00:00:00Z",
            "pushed_at": "2026-01-01T00:00:00Z",
        }
        for i in range(start, min(items, start + per_page))
    ]
    last = max(1, -(-items // per_page))
    link = f"{root}/user/repos?per_page={per_page}&sort=full_name"
    links = []
    if page < last:
        links.append(f'<{link}&page={page + 1}>; rel="next"')
        links.append(f'<{link}&page={last}>; rel="last"')
    return 200, {"Link": ", ".join(links)} if links else {}, repos


def spotify(items: int, query: Query, root: str, page_size: int) -> Answer:
    limit = min(_int(query, "limit", 20, 50), page_size)
    before = int(query["before"]) if query.get("before", "").isdigit() else None
    # Play i happened i minutes before the epoch; newest first, paged backwards in time.
    start = 0 if before is None else (_EPOCH_MS - before) // 60_000 + 1
    chunk = list(range(start, min(items, start + limit)))
    plays = [
        {
            "track": {"id": f"track{i % 5}", "name": f"Song {i % 5}", "artists": [{"name": "A"}]},
            "played_at": time.strftime(
                "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime((_EPOCH_MS - i * 60_000) / 1000)
            ),
            "context": None,
        }
        for i in chunk
    ]
    more = chunk and chunk[-1] + 1 < items
    oldest_ms = _EPOCH_MS - chunk[-1] * 60_000 if chunk else None
    body = {
        "items": plays,
        "limit": limit,
        "next": f"{root}/v1/me/player/recently-played?before={oldest_ms}&limit={limit}"
        if more
        else None,
        "cursors": {"after": str(_EPOCH_MS), "before": str(oldest_ms)} if chunk else None,
        "href": f"{root}/v1/me/player/recently-played",
    }
    return 200, {}, body


def google_calendar(items: int, query: Query, root: str, page_size: int) -> Answer:
    limit = min(_int(query, "maxResults", 250, 2500), page_size)
    start = _offset(query.get("pageToken"))
    events = [
        {
            "kind": "calendar#event",
            "id": f"evt{i:05d}",
            "status": "confirmed",
            "summary": f"Meeting {i}",
            "start": {"dateTime": "2026-01-01T09:00:00Z"},
            "end": {"dateTime": "2026-01-01T10:00:00Z"},
            "updated": "2026-01-01T00:00:00Z",
        }
        for i in range(start, min(items, start + limit))
    ]
    body: dict[str, Any] = {"kind": "calendar#events", "summary": "primary", "items": events}
    if start + limit < items:
        body["nextPageToken"] = _token(start + limit)
    else:
        body["nextSyncToken"] = "sync-token"
    return 200, {}, body


def youtube(items: int, query: Query, root: str, page_size: int) -> Answer:
    if query.get("mine") != "true" or "snippet" not in query.get("part", ""):
        return google_error(400, "badRequest", "youtube.parameter")
    limit = min(_int(query, "maxResults", 5, 50), page_size)
    start = _offset(query.get("pageToken"))
    subscriptions = [
        {
            "kind": "youtube#subscription",
            "id": f"sub-{i}",
            "snippet": {
                "title": f"Channel {i}",
                "publishedAt": "2026-01-01T00:00:00Z",
                "resourceId": {"kind": "youtube#channel", "channelId": f"UC{i:06d}"},
            },
        }
        for i in range(start, min(items, start + limit))
    ]
    body: dict[str, Any] = {
        "kind": "youtube#subscriptionListResponse",
        "pageInfo": {"totalResults": items, "resultsPerPage": limit},
        "items": subscriptions,
    }
    if start + limit < items:
        body["nextPageToken"] = _token(start + limit)
    return 200, {}, body


def discord(items: int, query: Query, root: str, page_size: int) -> Answer:
    # Discord honours `limit` (1-200) exactly: a shorter page is the last one.
    limit = _int(query, "limit", 200, 200)
    after = int(query["after"]) if query.get("after", "").isdigit() else 0
    ids = [10**18 + i for i in range(items) if 10**18 + i > after][:limit]
    guilds = [
        {"id": str(g), "name": f"Guild {g}", "icon": None, "owner": False, "permissions": "0"}
        for g in ids
    ]
    return 200, {}, guilds


def linkedin(items: int, query: Query, root: str, page_size: int) -> Answer:
    return (
        200,
        {},
        {
            "sub": "782bbtaQ",
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "locale": "en-US",
            "email": "ada@example.com",
        },
    )


def _fullname(i: int) -> str:
    digits, n = "", 1000 + i
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return f"t5_{digits}"


def reddit(items: int, query: Query, root: str, page_size: int) -> Answer:
    limit = min(_int(query, "limit", 25, 100), page_size)
    names = [_fullname(i) for i in range(items)]
    start = names.index(query["after"]) + 1 if query.get("after") in names else 0
    chunk = names[start : start + limit]
    children = [
        {"kind": "t5", "data": {"name": n, "display_name": f"sub{n}", "title": n, "over18": False}}
        for n in chunk
    ]
    after = chunk[-1] if chunk and start + limit < items else None
    return (
        200,
        {},
        {"kind": "Listing", "data": {"after": after, "dist": len(chunk), "children": children}},
    )


def google_error(status: int, reason: str, domain: str = "usageLimits") -> Answer:
    error = {
        "code": status,
        "message": f"{reason} {PROVIDER_TEXT}",
        "errors": [{"domain": domain, "reason": reason, "message": PROVIDER_TEXT}],
    }
    return status, {}, {"error": error}


UNAUTHORIZED: dict[str, Any] = {
    "github": {
        "message": f"Bad credentials {PROVIDER_TEXT}",
        "documentation_url": "https://docs.github.com/rest",
    },
    "spotify": {"error": {"status": 401, "message": f"The access token expired {PROVIDER_TEXT}"}},
    "google_calendar": google_error(401, "authError", "global")[2],
    "youtube": google_error(401, "authError", "global")[2],
    "discord": {"message": f"401: Unauthorized {PROVIDER_TEXT}", "code": 0},
    "linkedin": {"serviceErrorCode": 65601, "message": PROVIDER_TEXT, "status": 401},
    "reddit": {"message": f"Unauthorized {PROVIDER_TEXT}", "error": 401},
}


def throttled(provider: str, seconds: int) -> Answer:
    """The provider's own answer when its limit is spent (`seconds` until it resets)."""
    wait = {"Retry-After": str(seconds)}
    if provider == "github":
        reset = str(int(time.time()) + seconds)
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        return 403, headers, {"message": f"API rate limit exceeded {PROVIDER_TEXT}"}
    if provider in ("google_calendar",):
        return google_error(403, "rateLimitExceeded")
    if provider == "youtube":
        return google_error(403, "quotaExceeded", "youtube.quota")
    if provider == "discord":
        body = {"message": PROVIDER_TEXT, "retry_after": float(seconds), "global": False}
        return 429, {**wait, "X-RateLimit-Scope": "user"}, body
    if provider == "reddit":
        return 429, {"X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": str(seconds)}, {}
    return 429, wait, {"error": {"status": 429, "message": PROVIDER_TEXT}}


def quota_headers(provider: str, remaining: int, reset_in: int) -> dict[str, str]:
    """The remaining-quota headers each provider documents (none for Spotify, Google, LinkedIn)."""
    now = time.time()
    if provider == "github":
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(now + reset_in)),
            "X-RateLimit-Resource": "core",
        }
    if provider == "discord":
        return {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{now + reset_in:.3f}",
            "X-RateLimit-Reset-After": f"{reset_in:.3f}",
            "X-RateLimit-Bucket": "abcd1234",
        }
    if provider == "reddit":
        return {
            "X-Ratelimit-Used": "1",
            "X-Ratelimit-Remaining": f"{remaining}.0",
            "X-Ratelimit-Reset": str(reset_in),
        }
    return {}


PAGES: dict[str, tuple[str, Callable[[int, Query, str, int], Answer]]] = {
    "github": ("/user/repos", github),
    "spotify": ("/v1/me/player/recently-played", spotify),
    "google_calendar": ("/calendar/v3/calendars/primary/events", google_calendar),
    "youtube": ("/youtube/v3/subscriptions", youtube),
    "discord": ("/api/v10/users/@me/guilds", discord),
    "linkedin": ("/v2/userinfo", linkedin),
    "reddit": ("/subreddits/mine/subscriber", reddit),
}
