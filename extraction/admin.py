from __future__ import annotations

from django.contrib import admin

from connectors.admin import AdminStyle, UserIdSearchMixin, short_datetime
from extraction.models import ExtractionJob


@admin.register(ExtractionJob)
class ExtractionJobAdmin(UserIdSearchMixin, AdminStyle, admin.ModelAdmin):
    list_display = (
        "id",
        "user_id",
        "provider",
        "status",
        "progress",
        "items_extracted",
        "created_at_short",
        "finished_at_short",
    )
    list_filter = ("provider", "status")
    search_fields = ("user_id",)
    search_help_text = "Exact user id (a full UUID)."
    readonly_fields = ("id", "created_at", "updated_at")

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created_at_short(self, obj: ExtractionJob) -> str:
        return short_datetime(obj.created_at)

    @admin.display(description="Finished (UTC)", ordering="finished_at")
    def finished_at_short(self, obj: ExtractionJob) -> str:
        return short_datetime(obj.finished_at)
