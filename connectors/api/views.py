"""Thin viewsets: check who may act, call a selector or a service, shape the envelope."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors import cache, metrics, oauth, selectors, services
from connectors.api import envelope, schema, throttling
from connectors.api.permissions import (
    CanScrapeMetrics,
    ConfirmedSessionForWrites,
    IsServiceRoleOrStaff,
    acting_user_id,
    requester_user_id,
    validated_body,
)
from connectors.api.serializers import CallbackSerializer, ConnectionSerializer
from connectors.auth import MetricsTokenAuthentication, SupabaseJWTAuthentication
from connectors.providers import get_provider


class PlatformStatusViewSet(viewsets.ViewSet):
    @extend_schema(
        operation_id="platform_status",
        parameters=[schema.USER_ID],
        responses=schema.responses(
            {
                200: schema.StatusEnvelopeSerializer,
                304: OpenApiResponse(description="Unchanged since the If-None-Match ETag."),
            }
        ),
    )
    def retrieve(self, request: Request, user_id: str) -> HttpResponse:
        uid = acting_user_id(request, user_id)
        result = selectors.platform_status_for_user(
            user_id=uid, prefetched=throttling.prefetched_status(request)
        )
        return envelope.cached_read(request, result)

    def status_read_user_id(self) -> str | None:
        """The user whose status this request reads: the throttle's round trip reads the entry
        too when that is the caller (connectors/api/throttling.py)."""
        return self.kwargs.get("user_id") if self.action == "retrieve" else None

    @extend_schema(
        operation_id="platform_status_warm",
        request=None,
        parameters=[schema.USER_ID],
        responses=schema.responses({200: schema.WarmEnvelopeSerializer}),
    )
    def warm(self, request: Request, user_id: str) -> Response:
        """The seed's "warm on login": load the entry through the same lease as a read."""
        uid = acting_user_id(request, user_id)
        result = selectors.platform_status_for_user(user_id=uid)
        return envelope.success({"user_id": uid, "already_cached": result.cached})


class ConnectionViewSet(viewsets.ViewSet):
    permission_classes = [IsAuthenticated, ConfirmedSessionForWrites]

    @extend_schema(
        operation_id="connector_authorize",
        parameters=[schema.PROVIDER, schema.AUTHORIZE_USER_ID],
        responses=schema.responses({200: schema.AuthorizeEnvelopeSerializer}),
    )
    def authorize(self, request: Request, provider: str) -> Response:
        registered = get_provider(provider)
        uid = requester_user_id(request, request.query_params.get("user_id"))
        url, state = oauth.authorization_url(user_id=uid, provider=registered)
        return envelope.success(
            {"provider": registered.name, "authorization_url": url, "state": state}
        )

    @extend_schema(
        operation_id="connector_callback",
        request=CallbackSerializer,
        responses=schema.responses(
            {
                200: schema.ConnectionEnvelopeSerializer,
                502: schema.error_response("The provider failed or could not be reached."),
            }
        ),
    )
    def callback(self, request: Request) -> Response:
        params, uid = validated_body(request, CallbackSerializer)
        connection = services.connection_create_from_oauth(
            user_id=uid, provider=params["provider"], code=params["code"], state=params["state"]
        )
        return envelope.success(ConnectionSerializer(connection).data)

    @extend_schema(
        operation_id="connector_disconnect",
        parameters=[schema.PROVIDER, schema.USER_ID],
        responses=schema.responses({200: schema.ConnectionEnvelopeSerializer}),
    )
    def disconnect(self, request: Request, provider: str, user_id: str) -> Response:
        uid = acting_user_id(request, user_id)
        connection = services.connection_disconnect(user_id=uid, provider=provider)
        return envelope.success(ConnectionSerializer(connection).data)

    @extend_schema(
        operation_id="connectors_reset",
        request=None,
        parameters=[schema.USER_ID],
        responses=schema.responses({200: schema.ResetEnvelopeSerializer}),
    )
    def reset(self, request: Request, user_id: str) -> Response:
        uid = acting_user_id(request, user_id)
        count = services.connections_reset(user_id=uid)
        return envelope.success({"user_id": uid, "deactivated": count})


class CacheStatsViewSet(viewsets.ViewSet):
    authentication_classes = [SupabaseJWTAuthentication, SessionAuthentication]
    permission_classes = [IsServiceRoleOrStaff]

    @extend_schema(
        operation_id="cache_stats",
        responses=schema.responses({200: schema.CacheStatsEnvelopeSerializer}),
    )
    def retrieve(self, request: Request) -> Response:  # one document, not a list
        return envelope.success(cache.cache_stats())


class MetricsView(APIView):
    """Prometheus' scrape: every worker's samples, and the outbox backlog read at scrape time."""

    authentication_classes = [MetricsTokenAuthentication, SupabaseJWTAuthentication]
    permission_classes = [CanScrapeMetrics]
    throttle_classes: list[Any] = []
    schema = None  # not part of the API's OpenAPI document

    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics.exposition(
            accept=request.headers.get("Accept"),
            outbox=selectors.outbox_backlog,
            database_error=DatabaseError,
        )
        return HttpResponse(body, content_type=content_type)
