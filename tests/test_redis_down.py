"""Redis dies under a running service (a test-owned redis-server, never the shared one)."""

from __future__ import annotations

import pytest

from connectors import cache
from tests.support.clients import status_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def test_requests_keep_working_from_the_database_when_redis_dies(
    alice, alice_id, make_connection, own_redis
):
    row = make_connection(alice_id, "github")
    status_of(alice, alice_id)
    assert status_of(alice, alice_id)["cached"] is True

    own_redis.kill()
    body = status_of(alice, alice_id)
    assert body["cached"] is False
    assert body["data"]["platforms"]["github"]["connected"] is True
    # Writes still succeed; their invalidation is logged as lost (a later issue replays it).
    row.delete()
    assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is False
    assert alice.post(f"/api/connectors/reset/{alice_id}").status_code == 200
    assert cache.get_cached_platform_status(alice_id) is None


def test_cache_stats_reports_503_json_when_redis_is_down(service, own_redis):
    own_redis.kill()
    response = service.get("/api/admin/cache-stats")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cache_unavailable"
