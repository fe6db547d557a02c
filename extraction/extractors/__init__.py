"""One extractor per registry provider (connectors.providers): which endpoint it reads, how it
pages, and how the provider reports its quota and its limits. docs/extraction.md has the table."""

from __future__ import annotations

from connectors.providers import PROVIDERS, get_provider
from extraction.extractors.base import Extractor, Item, Page, Quota
from extraction.extractors.discord import Discord
from extraction.extractors.github import GitHub
from extraction.extractors.google import GoogleCalendar, YouTube
from extraction.extractors.linkedin import LinkedIn
from extraction.extractors.reddit import Reddit
from extraction.extractors.spotify import Spotify

EXTRACTORS: dict[str, Extractor] = {
    e.provider: e
    for e in (GitHub(), Spotify(), GoogleCalendar(), YouTube(), Discord(), LinkedIn(), Reddit())
}
# Every provider a user can connect can be synced.
assert set(EXTRACTORS) == set(PROVIDERS), set(PROVIDERS) ^ set(EXTRACTORS)


def for_provider(name: str) -> Extractor:
    return EXTRACTORS[get_provider(name).name]


__all__ = ["EXTRACTORS", "Extractor", "Item", "Page", "Quota", "for_provider"]
