"""Per-request plumbing outside the views: request id, latency metrics, one log line per error.

Outermost in settings.MIDDLEWARE, so static files (whitenoise), redirects and errors raised by
inner middleware are covered too.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from connectors import logs, metrics

Handler = Callable[[HttpRequest], HttpResponseBase]
REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy or client may hand us as an id: short, and nothing that could break a log line.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

logger = logging.getLogger("connectors.request")


class RequestIdMiddleware:
    """Take the caller's X-Request-ID (a proxy's, a client's) or make one; log lines carry it
    and the response returns it."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTED_ID.fullmatch(offered) else uuid.uuid4().hex
        token = logs.request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            logs.request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def route_of(request: HttpRequest) -> str:
    """The URL's name (a bounded label set), never the path (user ids would explode it)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return str(match.view_name)
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


class RequestMetricsMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        token = metrics.request_started()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
        finally:
            metrics.request_finished(
                token,
                route=route_of(request),
                method=request.method or "",
                status=status,
                seconds=time.perf_counter() - started,
            )
        return response


# Answers the service gives on purpose when a dependency or the operator's configuration is
# missing: worth a warning, not an error with a traceback.
_EXPECTED_5XX = frozenset({502, 503, 504})


class RequestLogMiddleware:
    """Exactly one line per error response: 4xx at INFO (the client's mistake, not ours), a
    deliberate 502/503/504 at WARNING, anything else at ERROR. Django's own django.request line
    is skipped for responses logged here; an unhandled exception keeps Django's line, with its
    traceback, and is not logged again."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        status = response.status_code
        if status < 400 or getattr(response, "_has_been_logged", False):
            return response
        if status < 500:
            level = logging.INFO
        elif status in _EXPECTED_5XX:
            level = logging.WARNING
        else:
            level = logging.ERROR
        logger.log(
            level,
            "%s %s -> %d %s",
            request.method,
            request.path,
            status,
            _error_code(response),
            extra={"status_code": status},
        )
        # Django's handler would log this response again (django.request, WARNING for a 4xx,
        # ERROR for a 5xx) once the middleware chain returns.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


def _error_code(response: HttpResponseBase) -> str:
    """The API's error code from the JSON envelope, when there is one."""
    if not response.get("Content-Type", "").startswith("application/json"):
        return ""
    content = getattr(response, "content", b"")
    if not content or len(content) > 8192:
        return ""
    try:
        error = json.loads(content).get("error", {})
    except (ValueError, AttributeError):
        return ""
    return str(error.get("code", "")) if isinstance(error, dict) else ""
