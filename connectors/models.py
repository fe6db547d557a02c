from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from typing import Any

from django.db import models, transaction
from django.db.models.functions import Now
from django.dispatch import Signal

from connectors.crypto import EncryptedTextField
from connectors.providers import PROVIDER_CHOICES


class SyncStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class ConnectionStatus(models.TextChoices):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    ERROR = "error"


# Bulk writes send no post_save: the QuerySet overrides below send this instead, inside the
# writing transaction, with `user_ids` (every user whose rows changed) and `using`. The receiver
# (connectors.signals) invalidates those users on commit; the model knows nothing of the cache.
connections_changed = Signal()


class PlatformConnectionQuerySet(models.QuerySet["PlatformConnection"]):
    """Bulk writes announce the users they touch (connections_changed).

    `QuerySet.delete()` needs nothing: it sends post_delete per row while receivers exist.
    """

    def _changed(self, user_ids: Iterable[uuid.UUID | str]) -> None:
        connections_changed.send(sender=self.model, user_ids=set(user_ids), using=self.db)

    def for_user(self, user_id: uuid.UUID | str) -> PlatformConnectionQuerySet:
        return self.filter(user_id=user_id)

    def active(self) -> PlatformConnectionQuerySet:
        return self.filter(is_active=True)

    def update(self, **kwargs: Any) -> int:
        with transaction.atomic(using=self.db):
            # Lock the rows first so the set of users cannot change between this read and
            # the UPDATE below.
            user_ids = set(self.select_for_update().values_list("user_id", flat=True))
            if "user_id" in kwargs:
                user_ids.add(kwargs["user_id"])
            count = super().update(**kwargs)
            self._changed(user_ids)
        return count

    def bulk_create(  # type: ignore[override]  # the stubs leave _Model unbound here
        self,
        objs: Iterable[PlatformConnection],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list[PlatformConnection]:
        with transaction.atomic(using=self.db):
            created: list[PlatformConnection] = super().bulk_create(  # type: ignore[assignment]
                objs,  # type: ignore[arg-type]
                batch_size=batch_size,
                ignore_conflicts=ignore_conflicts,
                update_conflicts=update_conflicts,
                update_fields=update_fields,
                unique_fields=unique_fields,
            )
            self._changed(obj.user_id for obj in created)
        return created

    def bulk_update(
        self,
        objs: Iterable[PlatformConnection],
        fields: Iterable[str],
        batch_size: int | None = None,
    ) -> int:
        objs = list(objs)
        with transaction.atomic(using=self.db):
            count = super().bulk_update(objs, fields, batch_size=batch_size)  # type: ignore[arg-type]
            self._changed(obj.user_id for obj in objs)
        return count


class PlatformConnection(models.Model):
    # PUBLIC_FIELDS is everything the status endpoint may show; the token columns are not in it
    # and are never selected on the read path.
    PUBLIC_FIELDS = (
        "provider",
        "is_active",
        "status",
        "scopes",
        "connected_at",
        "token_expires_at",
        "last_sync_at",
        "last_sync_status",
        "version",
    )

    user_id = models.UUIDField(db_index=True, help_text="The Supabase Auth user (auth.users.id).")
    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES)
    is_active = models.BooleanField(default=True)
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.CONNECTED
    )
    scopes = models.JSONField(default=list, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    access_token = EncryptedTextField(null=True, blank=True, editable=False)
    refresh_token = EncryptedTextField(null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.PENDING
    )
    last_sync_error = models.TextField(blank=True, default="")
    # Assigned by a database trigger on every INSERT and UPDATE, whoever writes (ORM save,
    # QuerySet.update, raw SQL, another service): a monotonic per-row version that the ETag and
    # the consistency checker rely on. Django never sets it.
    version = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PlatformConnectionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id", "provider"], name="uniq_connection_per_user")
        ]
        indexes = [models.Index(fields=["updated_at"], name="connection_updated_idx")]

    def __str__(self) -> str:
        return f"{self.provider} for {self.user_id}"


class PendingInvalidation(models.Model):
    """A change to a user's connections, and whether its cache invalidation was delivered.

    Rows are written by a database trigger in the same transaction as the change, whoever makes
    it (ORM, QuerySet.update, raw SQL, another service), so they survive a crash or a Redis
    outage between the commit and the DEL. The cache layer sets `delivered_at` once a DEL that
    followed their commit has succeeded; undelivered rows are replayed, and delivered ones are
    kept for a while and replayed again if Redis' master changes (connectors.cache.outbox).
    """

    id = models.BigAutoField(primary_key=True)
    user_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(db_default=Now())
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="pending_inval_created_idx"),
            models.Index(
                fields=["created_at"],
                name="pending_inval_undelivered_idx",
                condition=models.Q(delivered_at__isnull=True),
            ),
            models.Index(fields=["delivered_at"], name="pending_inval_delivered_idx"),
        ]

    def __str__(self) -> str:
        return f"pending invalidation of {self.user_id}"


class OAuthStateUse(models.Model):
    """The nonce of every OAuth state that completed a callback: a state works once.

    Inserted in the callback's transaction, so a replayed state (a second callback with the
    same state) hits the unique constraint. Rows older than the state's maximum age are useless
    (such a state fails its signature's expiry first) and are pruned by later callbacks.
    """

    nonce = models.CharField(max_length=64, unique=True)
    used_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"OAuth state used at {self.used_at:%Y-%m-%d %H:%M:%S}"
