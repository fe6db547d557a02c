"""System checks: configuration that works but that an operator should know about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from connectors.providers import PROVIDERS


def caching_is_off(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if settings.CACHE_ENABLED:
        return []
    return [
        checks.Warning(
            "Caching is off: neither REDIS_URL nor UPSTASH_REDIS_URL is set, so every status "
            "read goes to the database.",
            hint="Set REDIS_URL=redis://127.0.0.1:6379/0 to turn it on.",
            id="connectors.W001",
        )
    ]


def unknown_oauth_providers(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    unknown = sorted(set(settings.OAUTH_CLIENTS) - set(PROVIDERS))
    return [
        checks.Warning(
            f"OAUTH_{name.upper()}_* is set but {name!r} is not a provider of this service.",
            hint=f"Providers: {', '.join(PROVIDERS)}. Check the variable's spelling.",
            id="connectors.W002",
        )
        for name in unknown
    ]


def register() -> None:
    checks.register(caching_is_off, checks.Tags.caches)
    checks.register(unknown_oauth_providers)
