"""Each way a connection changes is followed by a read that shows the new state."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction

from connectors import cache, selectors
from connectors.models import PlatformConnection
from tests.support.clients import status_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _cached_then(alice, alice_id):
    """Read twice so the entry is certainly cached before the write under test."""
    status_of(alice, alice_id)
    assert status_of(alice, alice_id)["cached"] is True


def test_orm_save_invalidates(alice, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    row.last_sync_status = "failed"
    row.save()
    body = status_of(alice, alice_id)
    assert body["cached"] is False
    assert body["data"]["platforms"]["github"]["last_sync_status"] == "failed"


def test_orm_delete_invalidates(alice, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    row.delete()
    assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is False


def test_queryset_update_invalidates(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    PlatformConnection.objects.filter(user_id=alice_id).update(last_sync_status="running")
    platforms = status_of(alice, alice_id)["data"]["platforms"]
    assert platforms["github"]["last_sync_status"] == "running"


def test_queryset_delete_invalidates(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    PlatformConnection.objects.filter(user_id=alice_id).delete()
    assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is False


def test_bulk_create_invalidates(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    PlatformConnection.objects.bulk_create(
        [
            PlatformConnection(user_id=alice_id, provider="spotify", status="connected"),
        ]
    )
    assert status_of(alice, alice_id)["data"]["platforms"]["spotify"]["connected"] is True


def test_bulk_update_invalidates(alice, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    row.last_sync_status = "success"
    PlatformConnection.objects.bulk_update([row], ["last_sync_status"])
    assert (
        status_of(alice, alice_id)["data"]["platforms"]["github"]["last_sync_status"] == "success"
    )


def test_disconnect_endpoint_invalidates_and_forgets_tokens(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    response = alice.delete(f"/api/connectors/github/{alice_id}")
    assert response.status_code == 200
    assert response.json()["data"]["connected"] is False
    assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is False
    row = PlatformConnection.objects.get(user_id=alice_id, provider="github")
    assert row.access_token is None and row.refresh_token is None


def test_disconnecting_what_is_not_connected_is_a_404(alice, alice_id):
    response = alice.delete(f"/api/connectors/github/{alice_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_connected"


def test_disconnect_refuses_unknown_providers_and_other_users(alice, alice_id, bob_id):
    assert alice.delete(f"/api/connectors/myspace/{alice_id}").status_code == 400
    assert alice.delete(f"/api/connectors/github/{bob_id}").status_code == 403


def test_reset_deactivates_everything_and_invalidates(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    make_connection(alice_id, "spotify")
    make_connection(alice_id, "reddit", is_active=False, status="disconnected")
    _cached_then(alice, alice_id)
    response = alice.post(f"/api/connectors/reset/{alice_id}")
    assert response.status_code == 200
    assert response.json()["data"] == {"user_id": alice_id, "deactivated": 2}
    platforms = status_of(alice, alice_id)["data"]["platforms"]
    assert not any(p["connected"] for p in platforms.values())


def test_reset_sends_one_invalidation_not_two(alice, alice_id, make_connection, caplog):
    """The bulk update already invalidates on commit; the service must not schedule another."""
    make_connection(alice_id, "github")
    make_connection(alice_id, "spotify")
    _cached_then(alice, alice_id)
    caplog.set_level("INFO", logger="connectors.cache")
    caplog.clear()
    assert alice.post(f"/api/connectors/reset/{alice_id}").status_code == 200
    invalidations = [r for r in caplog.records if r.getMessage().startswith("Invalidated")]
    assert [r.getMessage().split(" (")[0] for r in invalidations] == [
        f"Invalidated platform_status cache for user {alice_id}"
    ]


def test_reset_leaves_other_users_alone(alice, alice_id, bob, bob_id, make_connection):
    make_connection(alice_id, "github")
    make_connection(bob_id, "github")
    alice.post(f"/api/connectors/reset/{alice_id}")
    assert status_of(bob, bob_id)["data"]["platforms"]["github"]["connected"] is True
    assert bob.post(f"/api/connectors/reset/{alice_id}").status_code == 403


def test_a_rolled_back_write_does_not_invalidate(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        PlatformConnection.objects.filter(user_id=alice_id).update(last_sync_status="failed")
        raise RuntimeError("roll back")
    body = status_of(alice, alice_id)
    assert body["cached"] is True
    assert body["data"]["platforms"]["github"]["last_sync_status"] == "pending"


def test_invalidation_waits_for_the_commit(alice, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    _cached_then(alice, alice_id)
    with transaction.atomic():
        row.last_sync_status = "failed"
        row.save()
        # Not yet committed: the cached entry must still be there for everyone else.
        assert cache.get_cached_platform_status(alice_id) is not None
    assert cache.get_cached_platform_status(alice_id) is None


def test_reads_inside_the_writing_transaction_see_their_own_write(alice_id, make_connection):
    row = make_connection(alice_id, "github")
    selectors.platform_status_for_user(user_id=alice_id)
    assert cache.get_cached_platform_status(alice_id) is not None
    with transaction.atomic():
        row.last_sync_status = "failed"
        row.save()
        inside = selectors.platform_status_for_user(user_id=alice_id)
        assert inside.cached is False
        assert inside.data["platforms"]["github"]["last_sync_status"] == "failed"
        # ...and that uncommitted read was not cached for anyone else.
        cached = cache.get_cached_platform_status(alice_id)
        assert cached is not None
        assert cached["platforms"]["github"]["last_sync_status"] == "pending"


def test_raw_sql_update_bumps_the_version_in_the_database(alice_id, make_connection):
    row = make_connection(alice_id, "github")
    before = PlatformConnection.objects.get(pk=row.pk).version
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connectors_platformconnection SET last_sync_status = %s WHERE id = %s",
            ["failed", row.pk],
        )
    assert PlatformConnection.objects.get(pk=row.pk).version > before


def test_writes_to_one_user_leave_the_others_cache_alone(bob, bob_id, alice_id, make_connection):
    make_connection(bob_id, "github")
    alice_row = make_connection(alice_id, "github")
    status_of(bob, bob_id)
    alice_row.delete()
    assert status_of(bob, bob_id)["cached"] is True
    assert uuid.UUID(bob_id)
