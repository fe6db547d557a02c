"""The connection's OAuth tokens for a sync: the only code that decrypts them, and the
refresh-token grant (RFC 6749 section 6) through the same hardened client as the callback."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from connectors import oauth
from connectors.models import ConnectionStatus, PlatformConnection
from connectors.oauth import TokenSet
from connectors.providers import Provider
from extraction import http
from extraction.errors import SyncFailed

_MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
# Refresh a little early: a token that expires while a page is in flight costs a 401 and a retry.
EXPIRY_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Credentials:
    connection_id: int
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None

    def expiring(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now + EXPIRY_MARGIN


def reconnect_message(provider: Provider) -> str:
    return (
        f"{provider.display_name} no longer accepts this connection; reconnect "
        f"{provider.display_name} to sync again."
    )


def credentials_load(*, user_id: str, provider: Provider) -> Credentials:
    connection = (
        PlatformConnection.objects.for_user(user_id)
        .active()
        .filter(provider=provider.name)
        .only("id", "status", "access_token", "refresh_token", "token_expires_at")
        .first()
    )
    if connection is None or not connection.access_token:
        raise SyncFailed(f"{provider.display_name} is not connected; connect it to sync.")
    if connection.status == ConnectionStatus.EXPIRED:
        raise SyncFailed(reconnect_message(provider))
    return Credentials(
        connection.pk,
        connection.access_token,
        connection.refresh_token,
        connection.token_expires_at,
    )


def credentials_refresh(*, provider: Provider, current: Credentials) -> Credentials:
    """New tokens for `current`, saved encrypted. A refusal raises SyncFailed with
    expire_connection set (the caller marks the connection expired with the job)."""
    if not current.refresh_token:
        raise SyncFailed(reconnect_message(provider), expire_connection=True)
    tokens = refresh_grant(provider=provider, refresh_token=current.refresh_token)
    with transaction.atomic():
        connection = PlatformConnection.objects.select_for_update().get(pk=current.connection_id)
        if connection.access_token != current.access_token:
            # The user reconnected while we were refreshing: their new tokens win.
            return Credentials(
                connection.pk,
                connection.access_token or "",
                connection.refresh_token,
                connection.token_expires_at,
            )
        connection.access_token = tokens.access_token
        # Google keeps the refresh token and sends none back; Spotify may rotate it.
        connection.refresh_token = tokens.refresh_token or current.refresh_token
        connection.token_expires_at = tokens.expires_at
        connection.save(
            update_fields=["access_token", "refresh_token", "token_expires_at", "updated_at"]
        )
    return Credentials(
        connection.pk, tokens.access_token, connection.refresh_token, tokens.expires_at
    )


def refresh_grant(*, provider: Provider, refresh_token: str) -> TokenSet:
    """POST grant_type=refresh_token to the provider's token URL (client authenticated as
    for the code exchange: HTTP Basic or the body)."""
    if not provider.client_id:
        raise SyncFailed(
            f"{provider.display_name} is not configured on this server, so its tokens cannot be "
            "refreshed."
        )
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": provider.client_id,
    }
    headers = oauth.client_authentication(provider, form)
    response = http.call(
        "POST",
        provider.effective_token_url,
        name=f"{provider.display_name}'s token endpoint",
        headers=headers,
        form=form,
        max_body_bytes=_MAX_TOKEN_RESPONSE_BYTES,
        deadline=settings.OAUTH_HTTP_TIMEOUT,
    )
    if 300 <= response.status < 400:
        raise SyncFailed(
            f"{provider.display_name}'s token endpoint answered with a redirect, which is not "
            "followed; try again later."
        )
    payload = _json_object(response.body)
    if 400 <= response.status < 500 or "error" in payload:
        # invalid_grant and friends (GitHub answers them with HTTP 200): the refresh token is
        # revoked or expired, and only the user can fix that.
        raise SyncFailed(reconnect_message(provider), expire_connection=True)
    tokens = oauth.tokens_from(provider, payload)
    if tokens is None:
        raise SyncFailed(f"{provider.display_name} sent no access token; try again later.")
    return tokens


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
