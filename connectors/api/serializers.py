from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connectors.models import PlatformConnection
from connectors.providers import get_provider


class ProviderField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        return get_provider(value).name  # UnknownProvider -> 400 unknown_provider


class CallbackSerializer(serializers.Serializer):
    provider = ProviderField(max_length=32)
    code = serializers.CharField(max_length=4096, trim_whitespace=True)
    state = serializers.CharField(max_length=2048, trim_whitespace=True)
    user_id = serializers.UUIDField(required=False)


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
