"""The provider registry: every platform a user can connect, and how to reach its OAuth server.

Only names in this registry are accepted anywhere (URLs, bodies, the database's choices), and the
status endpoint lists every one of them, connected or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from connectors.errors import UnknownProvider


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    display_name: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    supports_pkce: bool = True
    # RFC 6749 section 2.3.1: "basic" (HTTP Basic) or "post" (client_secret in the body).
    client_auth_method: str = "post"
    # The data API's root (extraction/extractors/); PROVIDER_API_BASE_<NAME> overrides it.
    api_base_url: str = ""

    @property
    def client(self) -> dict[str, str]:
        return settings.OAUTH_CLIENTS.get(self.name, {})

    @property
    def client_id(self) -> str:
        return self.client.get("client_id", "")

    @property
    def client_secret(self) -> str:
        return self.client.get("client_secret", "")

    @property
    def effective_authorize_url(self) -> str:
        return self.client.get("authorize_url") or self.authorize_url

    @property
    def effective_token_url(self) -> str:
        return self.client.get("token_url") or self.token_url

    @property
    def effective_api_base_url(self) -> str:
        return settings.PROVIDER_API_BASES.get(self.name) or self.api_base_url


_GOOGLE_AUTH = "https://accounts.google.com/o/oauth2/v2/auth"
_GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "google_calendar",
            "Google Calendar",
            _GOOGLE_AUTH,
            _GOOGLE_TOKEN,
            ("https://www.googleapis.com/auth/calendar.readonly",),
            api_base_url="https://www.googleapis.com",
        ),
        Provider(
            "spotify",
            "Spotify",
            "https://accounts.spotify.com/authorize",
            "https://accounts.spotify.com/api/token",
            ("user-read-recently-played", "user-top-read"),
            api_base_url="https://api.spotify.com",
        ),
        Provider(
            "github",
            "GitHub",
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            ("read:user",),
            api_base_url="https://api.github.com",
        ),
        Provider(
            "youtube",
            "YouTube",
            _GOOGLE_AUTH,
            _GOOGLE_TOKEN,
            ("https://www.googleapis.com/auth/youtube.readonly",),
            api_base_url="https://www.googleapis.com",
        ),
        Provider(
            "discord",
            "Discord",
            "https://discord.com/oauth2/authorize",
            "https://discord.com/api/oauth2/token",
            ("identify", "guilds"),
            api_base_url="https://discord.com",
        ),
        Provider(
            "linkedin",
            "LinkedIn",
            "https://www.linkedin.com/oauth/v2/authorization",
            "https://www.linkedin.com/oauth/v2/accessToken",
            ("openid", "profile"),
            supports_pkce=False,
            api_base_url="https://api.linkedin.com",
        ),
        Provider(
            "reddit",
            "Reddit",
            "https://www.reddit.com/api/v1/authorize",
            "https://www.reddit.com/api/v1/access_token",
            ("identity", "history", "mysubreddits"),
            supports_pkce=False,
            client_auth_method="basic",
            api_base_url="https://oauth.reddit.com",
        ),
    )
}

PROVIDER_CHOICES = [(p.name, p.display_name) for p in PROVIDERS.values()]


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except (KeyError, TypeError) as e:
        raise UnknownProvider(
            f"Unknown provider {name!r}; expected one of: {', '.join(PROVIDERS)}."
        ) from e
