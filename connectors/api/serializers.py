from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connectors.ids import canonical_uuid
from connectors.models import PlatformConnection
from connectors.providers import get_provider


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or canonical_uuid(data) is None:
            # Only the 8-4-4-4-12 form: uuid.UUID() would also take braces, "urn:uuid:",
            # missing dashes, surrounding whitespace and non-ASCII digits.
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
