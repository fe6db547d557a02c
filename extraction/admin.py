from __future__ import annotations

from django.contrib import admin

from connectors.admin import AdminStyle, UserIdSearchMixin, short_datetime
from extraction.models import ExtractedItem, ExtractionJob


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
    # The worker owns these: an edit here would race it (generation is its fencing token).
    readonly_fields = (
        "id",
        "created_at",
        "updated_at",
        "generation",
        "task_id",
        "recoveries",
        "heartbeat_at",
        "cursor",
        "rate_remaining",
        "rate_reset_at",
    )

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created_at_short(self, obj: ExtractionJob) -> str:
        return short_datetime(obj.created_at)

    @admin.display(description="Finished (UTC)", ordering="finished_at")
    def finished_at_short(self, obj: ExtractionJob) -> str:
        return short_datetime(obj.finished_at)


@admin.register(ExtractedItem)
class ExtractedItemAdmin(AdminStyle, admin.ModelAdmin):
    list_display = ("external_id", "kind", "connection", "updated_at")
    list_filter = ("kind",)
    list_select_related = ("connection",)
    readonly_fields = ("connection", "external_id", "kind", "data", "last_job_id", "first_seen_at")
