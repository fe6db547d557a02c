from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path

from connectors.api import exceptions
from connectors.api import urls as connectors_api
from extraction.api import urls as extraction_api


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def api_not_found(request: HttpRequest) -> JsonResponse:
    # JSON even with DEBUG on, where Django would otherwise answer with its HTML 404 page.
    return exceptions.handler404(request)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(connectors_api.urlpatterns + extraction_api.urlpatterns)),
    re_path(r"^api/", api_not_found),
    path("healthz", healthz, name="healthz"),
]

if settings.BENCH_CEILING:  # bench-only: `make bench`'s ceiling scenario
    from connectors.bench_hooks import ceiling_view

    # First, ahead of any catch-all under api/.
    urlpatterns.insert(0, path("api/bench/ceiling/<str:user_id>", ceiling_view, name="ceiling"))

handler400 = "connectors.api.exceptions.handler400"
handler403 = "connectors.api.exceptions.handler403"
handler404 = "connectors.api.exceptions.handler404"
handler500 = "connectors.api.exceptions.handler500"
