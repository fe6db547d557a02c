from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from connectors import cache
from connectors.errors import InvalidJobId, InvalidUserId
from connectors.models import PlatformConnection
from connectors.providers import get_provider

# The 8-4-4-4-12 hex form and nothing else: uuid.UUID() alone also takes braces, "urn:uuid:",
# missing dashes, surrounding whitespace and non-ASCII digits (int(..., 16) accepts them).
UUID_PATTERN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I | re.A
)


def _is_plain_uuid(value: object) -> bool:
    return isinstance(value, str) and len(value) == 36 and bool(UUID_PATTERN.fullmatch(value))


def strict_user_id(value: object) -> str:
    """The canonical user id, or InvalidUserId (400) for anything but a plain UUID string."""
    if _is_plain_uuid(value):
        return cache.normalize_user_id(value)
    raise InvalidUserId("user_id must be a UUID such as 7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a.")


def strict_job_id(value: object) -> str:
    if _is_plain_uuid(value):
        return cache.normalize_job_id(value)
    raise InvalidJobId("job_id must be a UUID such as 7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a.")


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data: Any) -> Any:
        if not _is_plain_uuid(data):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class ProviderField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        # Registry names exactly: "github " is not a provider (no trimming, no case folding).
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        return get_provider(value).name  # UnknownProvider -> 400 unknown_provider


class CallbackSerializer(serializers.Serializer):
    provider = ProviderField(max_length=32)
    code = serializers.CharField(max_length=4096, trim_whitespace=True)
    state = serializers.CharField(max_length=2048, trim_whitespace=True)
    user_id = StrictUUIDField(required=False)


class ConnectionSerializer(serializers.ModelSerializer):
    connected = serializers.SerializerMethodField()

    class Meta:
        model = PlatformConnection
        # Explicit, public fields only: the token columns are deliberately absent.
        fields = [
            "user_id",
            "provider",
            "connected",
            "is_active",
            "status",
            "scopes",
            "connected_at",
            "token_expires_at",
            "last_sync_at",
            "last_sync_status",
        ]
        read_only_fields = fields

    def get_connected(self, obj: PlatformConnection) -> bool:
        return bool(obj.is_active and obj.status == "connected")
