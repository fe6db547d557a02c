from __future__ import annotations

from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every hook is registered here, so every process (web worker, command, listener) has
        # them, whatever it happens to import.
        from connectors import cache, checks, selectors, signals

        signals.connect()
        checks.register()
        cache.on_recovery(selectors.platform_status_rewarm)
