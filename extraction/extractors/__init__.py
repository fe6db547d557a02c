"""One extractor per registry provider (connectors.providers): which endpoint it reads, how it
pages, and how the provider reports its quota and its limits. docs/extraction.md has the table."""

from __future__ import annotations

from connectors.providers import get_provider
from extraction.errors import SyncFailed
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


def for_provider(name: str) -> Extractor:
    provider = get_provider(name)
    if provider.name not in EXTRACTORS:  # a provider added to the registry, not yet here
        raise SyncFailed(f"{provider.display_name} cannot be synced by this version.")
    return EXTRACTORS[provider.name]


__all__ = ["EXTRACTORS", "Extractor", "Item", "Page", "Quota", "for_provider"]
