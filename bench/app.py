"""The bench app (bench/settings.py installs it): its ready() turns the bench-only knobs on."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings

from bench import latency


class BenchConfig(AppConfig):
    name = "bench"
    label = "bench"

    def ready(self) -> None:
        latency_ms = float(getattr(settings, "BENCH_DB_LATENCY_MS", 0.0))
        if latency_ms > 0:
            latency.connect(latency_ms)
        if getattr(settings, "BENCH_CACHE_MODE", "service") == "naive":
            # Not at module level: the naive switch imports the cache layer, hence the models.
            from tests.support import naive

            naive.install()
        if getattr(settings, "BENCH_HA_MODE", "service") == "naive":
            from tests.support import naive_ha

            naive_ha.install()
