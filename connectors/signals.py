"""Receivers that only call the cache layer; connected in ConnectorsConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from connectors import cache, metrics
from connectors.models import PlatformConnection


def platform_connection_changed(
    sender: type[PlatformConnection], instance: PlatformConnection, using: str, **kwargs: Any
) -> None:
    # Deferred to commit inside cache.py; until then this transaction's own reads of the user
    # bypass the cache.
    cache.invalidate_platform_status_on_commit(instance.user_id, using=using)
    transaction.on_commit(lambda: metrics.record_invalidations("signal"), using=using)


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(
            platform_connection_changed,
            sender=PlatformConnection,
            dispatch_uid=f"connectors.platform_connection_changed.{signal is post_save}",
        )
