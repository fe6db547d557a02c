"""Another service writes the shared table under its own, narrowly granted role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from connectors import cache, selectors
from connectors.cache import outbox
from connectors.cache.listener import conninfo_from_settings
from connectors.models import PendingInvalidation, PlatformConnection

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
TABLE = "connectors_platformconnection"


@pytest.fixture
def other_service() -> Iterator[psycopg.Connection[Any]]:
    """A role with DML on the connections table only: no right on the outbox table or the
    version sequence our triggers use. Cluster-wide, so it is dropped again afterwards."""
    role = f"other_service_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT SELECT, UPDATE, DELETE ON {TABLE} TO "{role}"')
    params = {**conninfo_from_settings(), "user": role}
    params.pop("password", None)
    conn = psycopg.connect(autocommit=True, **params)
    try:
        yield conn
    finally:
        conn.close()
        with connection.cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON {TABLE} FROM "{role}"')
            cursor.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')


def test_its_writes_succeed_and_still_reach_the_cache(
    alice_id, make_connection, other_service, settings
):
    row = make_connection(alice_id, "github")
    selectors.platform_status_for_user(user_id=alice_id)
    version = PlatformConnection.objects.get(pk=row.pk).version
    # Our triggers write the outbox and draw the version as their owner, not as this role.
    other_service.execute(
        "UPDATE connectors_platformconnection SET last_sync_status = 'failed' WHERE id = %s",
        [row.pk],
    )
    assert PlatformConnection.objects.get(pk=row.pk).version > version
    assert PendingInvalidation.objects.filter(user_id=alice_id).exists()
    assert cache.get_cached_platform_status(alice_id) is not None  # nobody told Redis yet
    settings.CACHE_OUTBOX_GRACE_SECONDS = 0
    outbox.sweep_once()
    status = selectors.platform_status_for_user(user_id=alice_id)
    assert status.data["platforms"]["github"]["last_sync_status"] == "failed"
    other_service.execute("DELETE FROM connectors_platformconnection WHERE id = %s", [row.pk])
    outbox.sweep_once()
    assert (
        selectors.platform_status_for_user(user_id=alice_id).data["platforms"]["github"][
            "connected"
        ]
        is False
    )
