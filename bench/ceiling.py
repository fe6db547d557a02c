"""`make bench`'s ceiling: a constant body of a status response's shape and size, through the
same middleware, DRF authentication, permission and user-id check as the status view, with no
cache and no database. What the status endpoint would cost if its cache were free."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.api.permissions import acting_user_id
from connectors.providers import PROVIDERS


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
