"""Every error the API returns, mapped to HTTP in one place.

Body: {"success": false, "error": {"code": ..., "message": ...}} (the Express API's envelope).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from connectors import metrics
from connectors.api.throttling import throttle_failed_authentication
from connectors.auth import AuthUnavailable
from connectors.errors import CacheUnavailable, DomainError

logger = logging.getLogger("connectors.api")

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "rate_limited",
    AuthUnavailable: "auth_unavailable",
    exceptions.ValidationError: "invalid_request",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, **extra}}


def _validation_message(detail: Any) -> str:
    if isinstance(detail, dict):
        parts = [f"{field}: {_validation_message(value)}" for field, value in detail.items()]
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_validation_message(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, **exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RequestDataTooBig):
        # Raised while DRF reads request.data; without this it would surface as Django's 400
        # page (HTML with DEBUG on) and an error-level log line per oversized request.
        return Response(
            error_body(
                "payload_too_large",
                f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # Failed authentication is counted by the per-IP limit too (DRF never throttles it).
        wait = throttle_failed_authentication(context["request"], context.get("view"))
        if wait is not None:
            exc = exceptions.Throttled(wait)
    if isinstance(exc, CacheUnavailable):
        # Redis' own text (addresses, key names, server messages) stays in the logs.
        logger.warning("Cache unavailable: %s", exc)
        return Response(
            error_body("cache_unavailable", "The cache is unavailable; try again shortly."),
            status=503,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, DatabaseError):
        # The response gets its one log line (connectors.middleware); the class is a detail.
        logger.debug("Database error: %s", exc.__class__.__name__)
        metrics.record_db_error("request")
        return Response(
            error_body("database_unavailable", "The database is unavailable; try again shortly."),
            status=503,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        if isinstance(exc, exceptions.ValidationError):
            body = error_body(code, _validation_message(exc.detail), fields=exc.detail)
        else:
            body = error_body(code, str(exc.detail))
        headers: dict[str, str] = {}
        auth_header = getattr(exc, "auth_header", None)  # set by APIView.handle_exception
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled
        if wait is not None:
            headers["Retry-After"] = str(int(wait or 1))
        retry_after = getattr(exc, "retry_after", None)  # AuthUnavailable
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Response(body, status=exc.status_code, headers=headers)
    return None


# Django-level handlers (URLs no view matched, oversized bodies, crashes): JSON too.
def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", "The request could not be read."), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("forbidden", "Forbidden."), status=403)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
