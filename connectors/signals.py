"""Receivers that only call the cache layer; connected in ConnectorsConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models.signals import post_delete, post_save

from connectors import cache
from connectors.models import PlatformConnection, connections_changed


def platform_connection_changed(
    sender: type[PlatformConnection], instance: PlatformConnection, using: str, **kwargs: Any
) -> None:
    # Deferred to commit by the cache layer; until then this transaction's own reads of the
    # user bypass the cache.
    cache.invalidate_platform_status_on_commit(instance.user_id, using=using, source="signal")


def platform_connections_changed(
    sender: type[PlatformConnection], user_ids: Iterable[Any], using: str, **kwargs: Any
) -> None:
    for user_id in user_ids:
        cache.invalidate_platform_status_on_commit(user_id, using=using, source="update")


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(
            platform_connection_changed,
            sender=PlatformConnection,
            dispatch_uid=f"connectors.platform_connection_changed.{signal is post_save}",
        )
    connections_changed.connect(
        platform_connections_changed,
        sender=PlatformConnection,
        dispatch_uid="connectors.platform_connections_changed",
    )
