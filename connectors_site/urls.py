from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from connectors import health
from connectors.api import exceptions
from connectors.api import urls as connectors_api
from connectors.api.schema import SchemaView
from connectors.api.views import MetricsView
from extraction.api import urls as extraction_api


def api_not_found(request: HttpRequest) -> JsonResponse:
    # JSON even with DEBUG on, where Django would otherwise answer with its HTML 404 page.
    return exceptions.handler404(request)


urlpatterns = [
    # The API first: Django tries patterns in order, and the status read is the hot path.
    path("api/", include(connectors_api.urlpatterns + extraction_api.urlpatterns)),
    # The OpenAPI schema and its docs, public like any API reference; the UIs' assets are static
    # files from drf-spectacular-sidecar (no CDN).
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/docs/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="connectors/redoc.html"),
        name="redoc",
    ),
    re_path(r"^api/", api_not_found),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Not public: the METRICS_TOKEN bearer or a service-role token (connectors/api/views.py).
    path("metrics", MetricsView.as_view(), name="metrics"),
]

handler400 = "connectors.api.exceptions.handler400"
handler403 = "connectors.api.exceptions.handler403"
handler404 = "connectors.api.exceptions.handler404"
handler500 = "connectors.api.exceptions.handler500"
