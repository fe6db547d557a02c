from __future__ import annotations

from django.contrib import admin

from connectors.admin import UserIdSearchMixin
from extraction.models import ExtractionJob


@admin.register(ExtractionJob)
class ExtractionJobAdmin(UserIdSearchMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "user_id",
        "provider",
        "status",
        "progress",
        "items_extracted",
        "created_at",
        "finished_at",
    )
    list_filter = ("provider", "status")
    search_fields = ("user_id",)
    search_help_text = "Exact user id (UUID)."
    readonly_fields = ("id", "created_at", "updated_at")
