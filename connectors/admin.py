from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from connectors import cache
from connectors.models import PlatformConnection


class UserIdSearchMixin:
    """Search by exact user id; anything that is not a UUID matches nothing (no 500)."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(user_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.none(), False


@admin.register(PlatformConnection)
class PlatformConnectionAdmin(UserIdSearchMixin, admin.ModelAdmin):
    list_display = (
        "user_id",
        "provider",
        "is_active",
        "status",
        "last_sync_status",
        "last_sync_at",
        "updated_at",
    )
    list_filter = ("provider", "is_active", "last_sync_status", "status")
    search_fields = ("user_id",)
    search_help_text = "Exact user id (UUID)."
    # The token columns are not editable and are listed nowhere: they never reach a page.
    fields = (
        "user_id",
        "provider",
        "is_active",
        "status",
        "scopes",
        "connected_at",
        "token_expires_at",
        "last_sync_at",
        "last_sync_status",
        "last_sync_error",
        "version",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("version", "created_at", "updated_at")
    actions = ("invalidate_cache",)

    # A view-only staff user may look, not act: dropping entries costs every one of those
    # users a database read, and the action is a write in effect.
    @admin.action(description="Invalidate cache for selected users", permissions=["change"])
    def invalidate_cache(
        self, request: HttpRequest, queryset: QuerySet[PlatformConnection]
    ) -> None:
        user_ids = set(queryset.values_list("user_id", flat=True))
        failed = [u for u in user_ids if not cache.invalidate_platform_status_cache(u)]
        if failed:
            self.message_user(
                request, f"Redis refused {len(failed)} invalidation(s).", messages.ERROR
            )
        self.message_user(
            request, f"Invalidated the cache of {len(user_ids) - len(failed)} user(s)."
        )
