"""Spotify: GET /v1/me/player/recently-played, cursor-paged by the `next` URL in the body.

Spotify sends no quota headers; over its rolling 30-second window it answers 429 with
Retry-After (seconds).
"""

from __future__ import annotations

from connectors.outbound import Response
from extraction.extractors.base import Extractor, Item, Page, external_id, pick


class Spotify(Extractor):
    provider = "spotify"
    kind = "play"
    path = "/v1/me/player/recently-played"

    def page_url(self, base: str, cursor: str | None) -> str:
        if cursor:
            return self.follow(base, cursor)
        return f"{base}{self.path}?limit=50"

    def parse(self, response: Response, *, base: str, url: str) -> Page:
        body = self.json(response, dict)
        plays = body.get("items")
        if not isinstance(plays, list):
            raise self.unreadable()
        items = []
        for play in plays:
            if not isinstance(play, dict) or not isinstance(play.get("track"), dict):
                continue
            track = play["track"]
            artists = [a.get("name") for a in track.get("artists") or [] if isinstance(a, dict)]
            # A play is identified by when it happened: the same track played twice is two plays.
            items.append(
                Item(
                    external_id(f"{play.get('played_at')}:{track.get('id')}"),
                    {**pick(play, "played_at"), **pick(track, "id", "name"), "artists": artists},
                )
            )
        next_url = body.get("next")
        return Page(items, self.follow(base, next_url) if next_url else None)
