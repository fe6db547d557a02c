"""A simulated remote database: every query through Django's cursor sleeps first.

Connection set-up (once per worker: connections persist) and the health check's `SELECT 1`
(sent only when the server closed the connection, connectors_site/db/postgresql) bypass execute
wrappers and are not delayed, as a pooled remote connection's would mostly not be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def connect(latency_ms: float) -> None:
    """From now on, every new database connection of this process sleeps `latency_ms` per query."""
    delay = latency_ms / 1000

    def sleep_then_execute(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        time.sleep(delay)
        return execute(sql, params, many, context)

    def install(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        # The wrapper list lives on the (per-thread) wrapper object and survives reconnects.
        if sleep_then_execute not in connection.execute_wrappers:
            connection.execute_wrappers.append(sleep_then_execute)

    connection_created.connect(install, weak=False, dispatch_uid="bench.latency")
