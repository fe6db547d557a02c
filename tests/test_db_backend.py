"""connectors_site/db/postgresql: the connection health check without a round trip."""

from __future__ import annotations

import select
import time
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def worker_connection() -> Iterator[BaseDatabaseWrapper]:
    """A second connection to the test database, used the way a gunicorn worker uses its own:
    persistent across requests, health-checked at the start of each."""
    wrapper = connections.create_connection("default")
    assert wrapper.settings_dict["CONN_HEALTH_CHECKS"]
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def _backend_pid(wrapper: BaseDatabaseWrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _last_statement_of(pid: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return str(cursor.fetchone()[0])


def _next_request(wrapper: BaseDatabaseWrapper) -> None:
    # What Django's request_started / request_finished handlers do between two requests.
    wrapper.close_if_unusable_or_obsolete()


def test_a_quiet_connection_is_reused_without_sending_anything(worker_connection):
    pid = _backend_pid(worker_connection)
    marker = f"SELECT 'marker-{uuid.uuid4()}'"
    with worker_connection.cursor() as cursor:
        cursor.execute(marker)
    _next_request(worker_connection)

    worker_connection.close_if_health_check_failed()

    # Django's own backend would have sent SELECT 1 here, one round trip per request.
    assert _last_statement_of(pid) == marker
    assert worker_connection.health_check_done
    assert _backend_pid(worker_connection) == pid


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it(worker_connection):
    pid = _backend_pid(worker_connection)
    _next_request(worker_connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The FATAL message and the close reach the idle socket asynchronously.
    poller = select.poll()
    poller.register(worker_connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(50) and time.monotonic() < deadline:
        pass

    # Without a health check this query fails ("terminating connection due to administrator
    # command") and so would the request.
    new_pid = _backend_pid(worker_connection)

    assert new_pid != pid
