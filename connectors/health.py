"""Liveness and readiness, outside DRF (no authentication, no throttling)."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from connectors import cache, metrics


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database answers. Redis being off or degraded does not make the service
    unready (it then serves from the database), but is reported."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except DatabaseError:
        metrics.record_db_error("readyz")
        database = "unavailable"
    body = {
        "status": "ok" if database == "ok" else "unavailable",
        "database": database,
        "redis": cache.health(),
        "breaker": cache.breaker_state(),
    }
    response = JsonResponse(body, status=200 if database == "ok" else 503)
    if database != "ok":
        response["Retry-After"] = "5"
    return response
