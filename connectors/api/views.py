"""Thin viewsets: check who may act, call a selector or a service, shape the envelope."""

from __future__ import annotations

from typing import Any

from rest_framework import status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from connectors import cache, oauth, selectors, services
from connectors.api.permissions import IsServiceRoleOrStaff, acting_user_id, requester_user_id
from connectors.api.serializers import CallbackSerializer, ConnectionSerializer
from connectors.auth import SupabaseJWTAuthentication
from connectors.providers import get_provider


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


class PlatformStatusViewSet(viewsets.ViewSet):
    def retrieve(self, request: Request, user_id: str) -> Response:
        uid = acting_user_id(request, user_id)
        result = selectors.platform_status_for_user(user_id=uid)
        headers = {"ETag": result.etag, "Cache-Control": "private, no-cache"}
        if _etag_matches(request, result.etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(
            {"success": True, "data": result.data, "cached": result.cached}, headers=headers
        )


class ConnectionViewSet(viewsets.ViewSet):
    def authorize(self, request: Request, provider: str) -> Response:
        registered = get_provider(provider)
        uid = requester_user_id(request, request.query_params.get("user_id"))
        url, state = oauth.authorization_url(user_id=uid, provider=registered)
        return Response(
            {
                "success": True,
                "data": {
                    "provider": registered.name,
                    "authorization_url": url,
                    "state": state,
                },
            }
        )

    def callback(self, request: Request) -> Response:
        body = CallbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        params: dict[str, Any] = body.validated_data
        uid = requester_user_id(request, params.get("user_id"))
        connection = services.connection_create_from_oauth(
            user_id=uid, provider=params["provider"], code=params["code"], state=params["state"]
        )
        return Response({"success": True, "data": ConnectionSerializer(connection).data})

    def disconnect(self, request: Request, provider: str, user_id: str) -> Response:
        uid = acting_user_id(request, user_id)
        connection = services.connection_disconnect(user_id=uid, provider=provider)
        return Response({"success": True, "data": ConnectionSerializer(connection).data})

    def reset(self, request: Request, user_id: str) -> Response:
        uid = acting_user_id(request, user_id)
        count = services.connections_reset(user_id=uid)
        return Response({"success": True, "data": {"user_id": uid, "deactivated": count}})


class CacheStatsViewSet(viewsets.ViewSet):
    authentication_classes = [SupabaseJWTAuthentication, SessionAuthentication]
    permission_classes = [IsServiceRoleOrStaff]

    def list(self, request: Request) -> Response:
        return Response({"success": True, "data": cache.cache_stats()})
