from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize
from django.utils import timezone

from connectors import cache
from connectors.models import PlatformConnection

_UUID_EXAMPLE = "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a"


class UserIdSearchMixin:
    """Search by exact user id. Anything that is not a full UUID matches nothing (no 500), and
    the page says why instead of showing an unexplained empty list."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(user_id=uuid.UUID(term)), False
        except ValueError:
            messages.warning(
                request,
                f"Search needs a full user id (a UUID such as {_UUID_EXAMPLE}); "
                f"{term[:60]!r} is not one, so nothing matches.",
            )
            return queryset.none(), False


def short_datetime(value: datetime | None) -> str:
    """'2026-11-25 15:29' (UTC): a third of Django's default width, so the columns fit."""
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


# The app list in a sidebar takes a quarter of a 1280 px screen from every change list; the
# breadcrumbs and the home page still lead everywhere.
admin.site.enable_nav_sidebar = False
admin.site.site_header = admin.site.site_title = "connectors admin"


class AdminStyle:
    class Media:
        css = {"all": ("connectors/admin.css",)}


@admin.register(PlatformConnection)
class PlatformConnectionAdmin(UserIdSearchMixin, AdminStyle, admin.ModelAdmin):
    list_display = (
        "user_id",
        "provider",
        "is_active",
        "status",
        "last_sync",
        "updated_at_short",
    )
    list_filter = ("provider", "is_active", "last_sync_status", "status")
    search_fields = ("user_id",)
    search_help_text = "Exact user id (a full UUID)."
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

    @admin.display(description="Last sync (UTC)", ordering="last_sync_at")
    def last_sync(self, obj: PlatformConnection) -> str:
        return f"{obj.get_last_sync_status_display()}, {short_datetime(obj.last_sync_at)}"

    @admin.display(description="Updated (UTC)", ordering="updated_at")
    def updated_at_short(self, obj: PlatformConnection) -> str:
        return short_datetime(obj.updated_at)

    # A view-only staff user may look, not act: dropping entries costs every one of those
    # users a database read, and the action is a write in effect.
    @admin.action(description="Invalidate cache for selected users", permissions=["change"])
    def invalidate_cache(
        self, request: HttpRequest, queryset: QuerySet[PlatformConnection]
    ) -> None:
        user_ids = set(queryset.values_list("user_id", flat=True))
        failed = [u for u in user_ids if not cache.invalidate_platform_status_cache(u)]
        done = len(user_ids) - len(failed)
        if failed:
            self.message_user(
                request,
                f"Redis refused {len(failed)} invalidation{pluralize(len(failed))}; "
                "they will be replayed from the outbox.",
                messages.ERROR,
            )
        self.message_user(request, f"Invalidated the cache of {done} user{pluralize(done)}.")
