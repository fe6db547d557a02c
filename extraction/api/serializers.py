from __future__ import annotations

from rest_framework import serializers

from connectors.api.serializers import ProviderField, StrictUUIDField
from extraction.models import ExtractionJob


class JobCreateSerializer(serializers.Serializer):
    provider = ProviderField(max_length=32)
    user_id = StrictUUIDField(required=False)


class ExtractionJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExtractionJob
        fields = [
            "id",
            "user_id",
            "provider",
            "status",
            "progress",
            "items_extracted",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
