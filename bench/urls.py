"""The product's URLconf, with the ceiling route first when BENCH_CEILING is on."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.urls import URLPattern, URLResolver, path

from bench.ceiling import ceiling_view
from connectors_site import urls as product
from connectors_site.urls import handler400, handler403, handler404, handler500

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

urlpatterns = list(cast("list[URLPattern | URLResolver]", product.urlpatterns))
if getattr(settings, "BENCH_CEILING", False):
    # Ahead of the product's catch-all under api/.
    urlpatterns.insert(0, path("api/bench/ceiling/<str:user_id>", ceiling_view, name="ceiling"))
