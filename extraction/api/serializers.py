from __future__ import annotations

from rest_framework import serializers

from connectors.api.serializers import ProviderField, StrictUUIDField
from extraction.models import ExtractionJob, JobStatus


class JobCreateSerializer(serializers.Serializer):
    provider = ProviderField(max_length=32)
    user_id = StrictUUIDField(required=False)


class JobListQuerySerializer(serializers.Serializer):
    provider = ProviderField(max_length=32, required=False)
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    user_id = StrictUUIDField(
        required=False, help_text="Service role: one user's jobs (default: every user's)."
    )
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


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
            "run_after",
        ]
        read_only_fields = fields
