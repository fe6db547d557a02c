"""The Express API's paths, each with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path

from connectors.api import views

_UUIDISH = r"(?P<user_id>[^/]+)"
_PROVIDER = r"(?P<provider>[^/]+)"

status_view = views.PlatformStatusViewSet.as_view({"get": "retrieve"})
warm_view = views.PlatformStatusViewSet.as_view({"post": "warm"})
authorize_view = views.ConnectionViewSet.as_view({"get": "authorize"})
callback_view = views.ConnectionViewSet.as_view({"post": "callback"})
reset_view = views.ConnectionViewSet.as_view({"post": "reset"})
disconnect_view = views.ConnectionViewSet.as_view({"delete": "disconnect"})
cache_stats_view = views.CacheStatsViewSet.as_view({"get": "retrieve"})

# Order matters: the literal segments (status, reset, callback) come before <provider>.
urlpatterns = [
    re_path(rf"^connectors/status/{_UUIDISH}/?$", status_view, name="platform-status"),
    re_path(rf"^connectors/status/{_UUIDISH}/warm/?$", warm_view, name="platform-status-warm"),
    re_path(r"^connectors/callback/?$", callback_view, name="connector-callback"),
    re_path(rf"^connectors/reset/{_UUIDISH}/?$", reset_view, name="connector-reset"),
    re_path(rf"^connectors/{_PROVIDER}/authorize/?$", authorize_view, name="connector-authorize"),
    re_path(
        rf"^connectors/{_PROVIDER}/{_UUIDISH}/?$", disconnect_view, name="connector-disconnect"
    ),
    re_path(r"^admin/cache-stats/?$", cache_stats_view, name="cache-stats"),
]
