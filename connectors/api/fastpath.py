"""The status hit's fast path: a middleware that answers GET status hits itself, in front of the
middleware a hit does not need (sessions, CSRF, auth, messages, axes) and of DRF's dispatch.

It runs the status viewset's own steps (DRF's initial(): negotiation, authentication,
permissions, throttles; then acting_user_id, the entry, the envelope, DRF's finalize_response),
so every rule has one implementation; a refusal (401, 403, 429) is answered by the viewset's own
handle_exception(), as DRF's dispatch would. Whatever else is not a plain hit (a miss, an entry
to refresh, Redis not to be read, a session cookie, any other method or route) goes on down the
middleware to the DRF viewset, with what was already done handed along: the throttle's verdict
(so it is counted once) and the entry read (so it is read once). API_FAST_PATH=0 turns it off;
the viewset stays the documented endpoint and the OpenAPI source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.urls import Resolver404, resolve, reverse

from connectors import cache, selectors
from connectors.api import envelope, throttling
from connectors.api.permissions import acting_user_id
from connectors.api.views import PlatformStatusViewSet

Handler = Callable[[HttpRequest], HttpResponseBase]
URL_NAME = "platform-status"


class StatusFastPathMiddleware:
    """Placed after every middleware that shapes a response (request id, metrics, log line,
    security headers, Content-Length, X-Frame-Options) and before those a hit does not use."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self._prefix: str | None = None

    def _status_prefix(self) -> str:
        if self._prefix is None:
            # The URL conf's own path to the status view, up to the user id.
            self._prefix = reverse(URL_NAME, kwargs={"user_id": "x"}).removesuffix("x")
        return self._prefix

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if (
            request.method == "GET"
            and settings.API_FAST_PATH
            and request.path_info.startswith(self._status_prefix())
            # A session cookie may get a Set-Cookie from the session middleware: not a hit's.
            and settings.SESSION_COOKIE_NAME not in request.COOKIES
        ):
            response = serve_hit(request)
            if response is not None:
                return response
        return self.get_response(request)


def serve_hit(request: HttpRequest) -> HttpResponseBase | None:
    """The response to a status hit, or None to let the DRF viewset answer."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    func: Any = match.func
    if match.url_name != URL_NAME or getattr(func, "cls", None) is not PlatformStatusViewSet:
        return None
    request.resolver_match = match  # the route the metrics label the request with
    # As DRF's ViewSetMixin.as_view() builds it: the actions bound as handlers (they are what
    # the Allow header lists), HEAD with GET.
    view = func.cls(**func.initkwargs)
    view.action_map = {"head": func.actions.get("get"), **func.actions}
    for method, action in view.action_map.items():
        setattr(view, method, getattr(view, action))
    view.args, view.kwargs = match.args, match.kwargs
    drf_request = view.initialize_request(request, *match.args, **match.kwargs)
    view.request = drf_request
    view.headers = view.default_response_headers
    try:
        view.initial(drf_request, *match.args, **match.kwargs)
        uid = acting_user_id(drf_request, match.kwargs["user_id"])
    except Exception as exc:
        # As DRF's dispatch answers it (401, 403, 429, ...): authenticated, counted, answered
        # once. Handing it on would verify the token and count the failure a second time.
        return _finalize(view, drf_request, view.handle_exception(exc))
    # Counted already: from here on, if the viewset answers after all, it takes this verdict
    # rather than counting the request again.
    request.META[throttling.VERDICT_META] = throttling.Verdict(True, None)
    prefetched = throttling.prefetched_status(drf_request)
    if prefetched is None:
        # Nothing to count (the service role), or the counters could not share the read's
        # round trip: the entry alone, as the read path's own GET would.
        prefetched = selectors.platform_status_prefetch(user_id=uid)
        if prefetched is None:
            return None
    result = selectors.platform_status_prefetched_hit(user_id=uid, prefetched=prefetched)
    if isinstance(result, cache.Prefetched):
        # A miss, or an entry to refresh: the viewset's read goes on from what was read.
        request.META[throttling.PREFETCH_META] = result
        return None
    return _finalize(view, drf_request, envelope.cached_read(drf_request, result))


def _finalize(view: Any, drf_request: Any, response: HttpResponseBase) -> HttpResponseBase:
    response = view.finalize_response(drf_request, response, *view.args, **view.kwargs)
    if isinstance(response, SimpleTemplateResponse):
        response.render()  # a DRF Response (a 304, an error): Django renders a view's, not ours
    return response
