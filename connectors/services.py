"""Writes. Each one leaves the user's cached status invalidated once its transaction commits."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors import oauth
from connectors.errors import (
    NotConnected,
    OAuthStateAlreadyUsed,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from connectors.ids import normalize_user_id
from connectors.models import ConnectionStatus, OAuthStateUse, PlatformConnection, SyncStatus
from connectors.providers import get_provider

_STATE_USED_MESSAGE = "This OAuth state has already been used; start the connection again."


def connection_create_from_oauth(
    *, user_id: str, provider: str, code: str, state: str
) -> PlatformConnection:
    """Finish the OAuth flow: check the state (signed, this user's, this provider's, unexpired),
    claim it (once), trade the code, and store the tokens encrypted."""
    uid = normalize_user_id(user_id)
    registered = get_provider(provider)
    nonce = oauth.state_verify(state=state, user_id=uid, provider=registered)
    claim = _oauth_state_claim(nonce=nonce)
    try:
        # Outside any transaction: no row lock is held while we wait on a remote server.
        tokens = oauth.exchange_code(provider=registered, code=code, nonce=nonce)
    except (ProviderUnavailable, ProviderNotConfigured):
        # Transient, or ours to fix: the code may still be good, so the same callback may be
        # retried. A refused code (OAuthExchangeFailed) keeps the state used: that code is
        # dead, a retry could never succeed, and a new attempt gets a new state anyway.
        OAuthStateUse.objects.filter(pk=claim.pk).delete()
        raise
    with transaction.atomic():
        connection, _ = PlatformConnection.objects.select_for_update().get_or_create(
            user_id=uid, provider=registered.name
        )
        connection.is_active = True
        connection.status = ConnectionStatus.CONNECTED
        connection.connected_at = timezone.now()
        connection.access_token = tokens.access_token
        connection.refresh_token = tokens.refresh_token
        connection.token_expires_at = tokens.expires_at
        connection.scopes = tokens.scopes
        connection.last_sync_error = ""
        connection.save()  # post_save invalidates on commit
    return connection


def _oauth_state_claim(*, nonce: str) -> OAuthStateUse:
    """Mark the state used, committed before the provider is called: of concurrent callbacks
    with one state, exactly one gets past the unique nonce, so the provider sees the code once."""
    now = timezone.now()
    try:
        with transaction.atomic():
            claim = OAuthStateUse.objects.create(nonce=nonce, used_at=now)
    except IntegrityError as e:
        raise OAuthStateAlreadyUsed(_STATE_USED_MESSAGE) from e
    # Opportunistic pruning (indexed, and callbacks are rare): a nonce older than the state's
    # maximum age guards nothing, its state fails the signature's expiry first. A minute of
    # slack covers clocks of several servers that disagree a little.
    OAuthStateUse.objects.filter(
        used_at__lt=now - timedelta(seconds=oauth.STATE_MAX_AGE_SECONDS + 60)
    ).delete()
    return claim


def connection_disconnect(*, user_id: str, provider: str) -> PlatformConnection:
    """Deactivate one connection and forget its tokens."""
    uid = normalize_user_id(user_id)
    name = get_provider(provider).name
    with transaction.atomic():
        connection = (
            PlatformConnection.objects.select_for_update()
            .for_user(uid)
            .active()
            .filter(provider=name)
            .first()
        )
        if connection is None:
            raise NotConnected(f"{name} is not connected for this user.")
        connection.is_active = False
        connection.status = ConnectionStatus.DISCONNECTED
        connection.access_token = None
        connection.refresh_token = None
        connection.token_expires_at = None
        connection.save()  # post_save invalidates on commit
    return connection


def connections_reset(*, user_id: str) -> int:
    """Deactivate all of a user's connections; returns how many were active."""
    uid = normalize_user_id(user_id)
    # QuerySet.update() runs in its own transaction and invalidates on commit, like every bulk
    # path (PlatformConnectionQuerySet).
    return (
        PlatformConnection.objects.for_user(uid)
        .active()
        .update(
            is_active=False,
            status=ConnectionStatus.DISCONNECTED,
            access_token=None,
            refresh_token=None,
            token_expires_at=None,
            updated_at=timezone.now(),
        )
    )


def connection_set_sync_status(
    *, user_id: str, provider: str, sync_status: SyncStatus, error: str = ""
) -> PlatformConnection | None:
    """Record a sync's progress on the connection, through the model so post_save invalidates."""
    uid = normalize_user_id(user_id)
    with transaction.atomic():
        connection = (
            PlatformConnection.objects.select_for_update()
            .for_user(uid)
            .filter(provider=provider)
            .first()
        )
        if connection is None:
            return None
        connection.last_sync_status = sync_status
        connection.last_sync_error = error[:2000]
        if sync_status in (SyncStatus.SUCCESS, SyncStatus.FAILED):
            connection.last_sync_at = timezone.now()
        connection.save(
            update_fields=[
                "last_sync_status",
                "last_sync_error",
                "last_sync_at",
                "updated_at",
            ]
        )
    return connection
