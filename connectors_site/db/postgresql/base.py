"""Django's psycopg backend with a connection health check that costs no round trip.

Django's CONN_HEALTH_CHECKS sends `SELECT 1` before the first query of every request that reuses
a connection: one more round trip on every cache miss. A connection that died while idle almost
always says so on its socket (the server's FATAL message and FIN make it readable while nothing
is in flight), so a quiet socket is trusted and only a readable one gets Django's `SELECT 1`
(go-sql-driver/mysql's `connCheck` does the same). A peer that vanished without a FIN leaves a
quiet socket, which `SELECT 1` would not have fixed either. See docs/architecture.md.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if self.connection is not None and not self.pool and not self._server_spoke_while_idle():
            self.health_check_done = True  # passed without a round trip
        super().close_if_health_check_failed()  # SELECT 1, unless passed above

    def _server_spoke_while_idle(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return True
        try:
            poller = select.poll()  # not select(): file descriptors above 1023 are fine
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True
