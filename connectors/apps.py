from __future__ import annotations

from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connectors import signals

        signals.connect()

        from django.conf import settings

        if settings.BENCH_DB_LATENCY_MS > 0:
            from connectors import bench_hooks

            bench_hooks.connect_db_latency()
