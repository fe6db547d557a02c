"""Bench-only hooks (`make bench`, bench/run.py); inert unless their settings turn them on.

* BENCH_DB_LATENCY_MS > 0: every query through Django's cursor sleeps that long first, a
  simulated remote database (ConnectorsConfig.ready() connects it). Connection set-up (once per
  worker, connections persist) and the health check's `SELECT 1` (sent only when the server
  closed the connection, connectors_site/db/postgresql) bypass execute wrappers and are not
  delayed.
* BENCH_CEILING: connectors_site/urls.py routes /api/bench/ceiling/<user_id> to `ceiling_view`,
  a constant body of a status response's shape and size through the same middleware, DRF
  authentication, permission and user-id check as the status view, with no cache and no DB.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.api.permissions import acting_user_id
from connectors.providers import PROVIDERS


def _sleep_then_execute(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    time.sleep(settings.BENCH_DB_LATENCY_MS / 1000)
    return execute(sql, params, many, context)


def _install_latency(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # The wrapper list lives on the (per-thread) wrapper object and survives reconnects.
    if _sleep_then_execute not in connection.execute_wrappers:
        connection.execute_wrappers.append(_sleep_then_execute)


def connect_db_latency() -> None:
    connection_created.connect(_install_latency, dispatch_uid="connectors.bench_hooks.latency")


def _constant_status() -> dict[str, Any]:
    platforms: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(PROVIDERS):
        connected = index % 4 != 3
        platforms[name] = {
            "connected": connected,
            "status": "connected" if connected else "disconnected",
            "connected_at": "2025-01-02T03:04:05.678901Z",
            "last_sync_at": "2025-06-07T08:09:10.111213Z",
            "last_sync_status": "success",
            "version": 1000 + index,
        }
    return {"user_id": "00000000-0000-4000-8000-000000000000", "platforms": platforms}


_BODY = {"success": True, "data": _constant_status(), "cached": True}
_HEADERS = {"ETag": '"00000000000000000000000000000000"', "Cache-Control": "private, no-cache"}


class CeilingViewSet(viewsets.ViewSet):
    def retrieve(self, request: Request, user_id: str) -> Response:
        acting_user_id(request, user_id)
        return Response(_BODY, headers=_HEADERS)


ceiling_view = CeilingViewSet.as_view({"get": "retrieve"})
