"""OpenAPI description of the API (drf-spectacular): envelopes, errors, the bearer scheme.

The views return hand-shaped envelopes ({"success", "data", ...}), so their serializers here
exist only to describe responses; schemathesis checks every live response against them
(tests/test_schema_fuzz.py), which keeps this file honest.
"""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.api.serializers import ConnectionSerializer
from connectors.providers import PROVIDERS


class SupabaseJWTScheme(OpenApiAuthenticationExtension):
    target_class = "connectors.auth.SupabaseJWTAuthentication"
    name = "SupabaseAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A Supabase access token (ES256/RS256 via JWKS, or legacy HS256), or "
            "the project's service-role key.",
        }


# --- Errors -------------------------------------------------------------------------------------
def envelope(name: str, **fields: serializers.Field) -> serializers.Serializer:
    """A response body described by an inline serializer: field names such as `data` and
    `fields` would shadow Serializer's own attributes in a class body."""
    return inline_serializer(name, {"success": serializers.BooleanField(), **fields})


def error_envelope(name: str, **extra: serializers.Field) -> serializers.Serializer:
    """{"success": false, "error": {"code", "message", **extra}}, as exceptions.py answers."""
    detail = {"code": serializers.CharField(), "message": serializers.CharField(), **extra}
    return envelope(f"{name}Envelope", error=inline_serializer(f"{name}Detail", detail))


ErrorEnvelopeSerializer = error_envelope(
    "Error",
    fields=serializers.JSONField(required=False, help_text="Per-field messages (400 only)."),
)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorEnvelopeSerializer, description=description)


# What any endpoint may answer besides its success; each view adds its own (409, 502, ...).
COMMON_ERRORS: dict[int, OpenApiResponse] = {
    400: error_response("Invalid input (invalid_user_id, unknown_provider, invalid_json, ...)."),
    401: error_response("Missing or invalid access token (WWW-Authenticate: Bearer)."),
    403: error_response(
        "Not allowed to act on this user (same body whether the user exists or not)."
    ),
    404: error_response("Not found."),
    405: error_response("Method not allowed."),
    406: error_response("Not acceptable."),
    413: error_response("Request body too large."),
    415: error_response("Unsupported media type (JSON only)."),
    429: error_response("Rate limited (Retry-After says when to retry)."),
    503: error_response("Auth, database or provider configuration unavailable (Retry-After)."),
}


def responses(specific: dict[int, Any]) -> dict[int, Any]:
    """The endpoint's own responses (its success, and errors such as 409 / 502) plus the
    common errors."""
    return {**COMMON_ERRORS, **specific}


# --- Parameters ---------------------------------------------------------------------------------
USER_ID = OpenApiParameter(
    "user_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The Supabase user id."
)
PROVIDER = OpenApiParameter(
    "provider", str, OpenApiParameter.PATH, enum=list(PROVIDERS), description="A provider."
)
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
AUTHORIZE_USER_ID = OpenApiParameter(
    "user_id",
    OpenApiTypes.UUID,
    OpenApiParameter.QUERY,
    required=False,
    description="Service role only: the user to connect.",
)


# --- Success bodies -----------------------------------------------------------------------------
class PlatformStateSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    status = serializers.CharField()
    connected_at = serializers.DateTimeField(allow_null=True)
    last_sync_at = serializers.DateTimeField(allow_null=True)
    last_sync_status = serializers.CharField(allow_null=True)
    version = serializers.IntegerField()


class PlatformStatusSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    platforms = serializers.DictField(child=PlatformStateSerializer())


StatusEnvelopeSerializer = envelope(
    "StatusEnvelope",
    data=PlatformStatusSerializer(),
    cached=serializers.BooleanField(),
    stale=serializers.BooleanField(
        required=False, help_text="Served past its TTL because the database was unavailable."
    ),
)


class WarmDataSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    already_cached = serializers.BooleanField(
        help_text="The entry was in the cache already; false: this call loaded it."
    )


WarmEnvelopeSerializer = envelope("WarmEnvelope", data=WarmDataSerializer())


class AuthorizeDataSerializer(serializers.Serializer):
    provider = serializers.CharField()
    authorization_url = serializers.URLField()
    state = serializers.CharField()


AuthorizeEnvelopeSerializer = envelope("AuthorizeEnvelope", data=AuthorizeDataSerializer())


ConnectionEnvelopeSerializer = envelope("ConnectionEnvelope", data=ConnectionSerializer())


class ResetDataSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    deactivated = serializers.IntegerField()


ResetEnvelopeSerializer = envelope("ResetEnvelope", data=ResetDataSerializer())


CacheStatsEnvelopeSerializer = envelope(
    "CacheStatsEnvelope",
    data=serializers.DictField(help_text="hits, misses, hit_ratio, keys, redis_memory, ..."),
)


def only_api_paths(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook: the API only (not the schema and docs views themselves), documented
    without the optional trailing slash every route accepts (`/?$`), as the README writes them."""
    kept = []
    for path, path_regex, method, callback in endpoints:
        if not path.startswith("/api/") or path.startswith(("/api/schema", "/api/docs")):
            continue
        kept.append((path.rstrip("/"), path_regex, method, callback))
    return kept


_generation_lock = threading.Lock()


class SchemaView(SpectacularAPIView):
    """/api/schema/, generated one request at a time per process.

    drf-spectacular loads its extensions' target classes lazily and not thread-safely: two
    first requests at once in a fresh threaded server made one of them a 500 (found by the
    fuzz run, tests/test_schema_fuzz.py). Schema requests are rare, so a lock costs nothing.
    """

    def _get_schema_response(self, request: Request) -> Response:
        with _generation_lock:
            return super()._get_schema_response(request)
