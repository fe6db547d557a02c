"""Reads. The status read goes through connectors.cache; nothing here knows a cache key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone

from connectors import cache
from connectors.ids import normalize_user_id
from connectors.models import PendingInvalidation, PlatformConnection
from connectors.providers import PROVIDERS


def iso_utc(value: datetime | None) -> str | None:
    # The same form DRF and the Express API give: UTC with a trailing Z.
    return value.isoformat().replace("+00:00", "Z") if value else None


def platform_status_from_db(*, user_id: str) -> dict[str, Any]:
    """The status document for one user, straight from the database."""
    platforms: dict[str, dict[str, Any]] = {
        name: {
            "connected": False,
            "status": "not_connected",
            "connected_at": None,
            "last_sync_at": None,
            "last_sync_status": None,
            "version": 0,
        }
        for name in PROVIDERS
    }
    # .values() of public columns only: the encrypted token columns are never read here.
    rows = PlatformConnection.objects.for_user(user_id).values(*PlatformConnection.PUBLIC_FIELDS)
    for row in rows:
        if row["provider"] not in platforms:
            continue  # a provider removed from the registry
        platforms[row["provider"]] = {
            "connected": bool(row["is_active"] and row["status"] == "connected"),
            "status": row["status"] if row["is_active"] else "disconnected",
            "connected_at": iso_utc(row["connected_at"]),
            "last_sync_at": iso_utc(row["last_sync_at"]),
            "last_sync_status": row["last_sync_status"],
            "version": row["version"],
        }
    return {"user_id": user_id, "platforms": platforms}


def platform_status_for_user(
    *, user_id: object, prefetched: cache.Prefetched | None = None
) -> cache.CachedRead:
    uid = normalize_user_id(user_id)
    return cache.read_platform_status(
        uid, lambda: platform_status_from_db(user_id=uid), prefetched=prefetched
    )


def platform_status_prefetch(*, user_id: str) -> cache.Prefetched | None:
    """The user's entry as read by one round trip, for platform_status_prefetched_hit(); None
    when the cache is not to be read now (the read path decides then)."""
    folded = cache.counted_read_platform_status(user_id, [])
    return None if folded is None else folded[1]


def platform_status_prefetched_hit(
    *, user_id: str, prefetched: cache.Prefetched
) -> cache.CachedRead | cache.Prefetched:
    """The status served from what the request's rate-limit round trip read, if that is a hit;
    else what to pass to platform_status_for_user (connectors/api/fastpath.py)."""
    return cache.prefetched_hit(user_id, prefetched)


def platform_status_rewarm(user_ids: list[str], lost_data: bool) -> None:
    """After a Redis outage, read users through the cache again (same leases): the ones this
    process served last, and if Redis came back empty, the most recently active ones too, as
    `manage.py warm_cache` would (bounded by CACHE_WARM_ON_EMPTY). Registered in
    ConnectorsConfig.ready()."""
    if lost_data and settings.CACHE_WARM_ON_EMPTY > 0:
        active = (
            PlatformConnection.objects.active()
            .values("user_id")
            .annotate(last_change=Max("updated_at"))
            .order_by("-last_change")[: settings.CACHE_WARM_ON_EMPTY]
        )
        user_ids = list(dict.fromkeys([*user_ids, *(str(row["user_id"]) for row in active)]))
    for user_id in user_ids:
        if not cache.enabled() or not cache.breaker_closed():
            return  # Redis went away again: stop rather than hammer the database
        platform_status_for_user(user_id=user_id)


def connection_get_active(*, user_id: str, provider: str) -> PlatformConnection | None:
    return PlatformConnection.objects.for_user(user_id).active().filter(provider=provider).first()


def outbox_backlog() -> tuple[int, float | None]:
    """How many invalidations wait for delivery, and the oldest one's age in seconds."""
    summary = PendingInvalidation.objects.aggregate(pending=Count("id"), oldest=Min("created_at"))
    oldest = summary["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else None
    return int(summary["pending"]), age
