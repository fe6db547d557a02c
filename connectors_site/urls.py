from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from connectors.api import urls as connectors_api
from extraction.api import urls as extraction_api


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(connectors_api.urlpatterns + extraction_api.urlpatterns)),
    path("healthz", healthz, name="healthz"),
]

handler400 = "connectors.api.exceptions.handler400"
handler403 = "connectors.api.exceptions.handler403"
handler404 = "connectors.api.exceptions.handler404"
handler500 = "connectors.api.exceptions.handler500"
