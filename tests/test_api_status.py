from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from connectors.providers import PROVIDERS
from tests.support.clients import NOT_CONNECTED, status_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_provider_appears_and_unconnected_ones_say_so(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    body = status_of(alice, alice_id)
    assert body["success"] is True
    assert body["data"]["user_id"] == alice_id
    platforms = body["data"]["platforms"]
    assert set(platforms) == set(PROVIDERS)
    assert platforms["github"]["connected"] is True
    assert platforms["github"]["status"] == "connected"
    assert platforms["github"]["connected_at"].endswith("Z")
    assert platforms["spotify"] == NOT_CONNECTED


@pytest.mark.redis
def test_it_serves_the_second_read_from_cache(alice, alice_id, make_connection):
    make_connection(alice_id, "spotify")
    first = status_of(alice, alice_id)
    with CaptureQueriesContext(connection) as queries:
        second = status_of(alice, alice_id)
    assert first["cached"] is False
    assert second["cached"] is True
    assert second["data"] == first["data"]
    assert len(queries) == 0


def test_without_redis_every_read_comes_from_the_database(alice, alice_id, settings):
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    assert status_of(alice, alice_id)["cached"] is False
    assert status_of(alice, alice_id)["cached"] is False


def test_paths_work_with_and_without_trailing_slash(alice, alice_id):
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200
    assert alice.get(f"/api/connectors/status/{alice_id}/").status_code == 200


def test_it_answers_401_with_www_authenticate_without_a_token(anonymous, alice_id):
    response = anonymous.get(f"/api/connectors/status/{alice_id}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_user_cannot_read_another_users_status(alice, bob_id, make_connection):
    make_connection(bob_id, "github")
    existing = alice.get(f"/api/connectors/status/{bob_id}")
    missing = alice.get(f"/api/connectors/status/{uuid.uuid4()}")
    assert existing.status_code == missing.status_code == 403
    # The same body whether the other user exists or not: nothing is revealed.
    assert existing.json() == missing.json()
    assert existing.json()["success"] is False


def test_the_service_role_may_read_anyone(service, bob_id, make_connection):
    make_connection(bob_id, "reddit")
    assert status_of(service, bob_id)["data"]["platforms"]["reddit"]["connected"] is True


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "1234",
        "platform_status:*",
        "%2A",
        "a" * 36,
        "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3",
        "７f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a",
    ],
)
def test_a_malformed_user_id_is_a_400(service, bad_id):
    response = service.get(f"/api/connectors/status/{bad_id}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_user_id"


def test_unsupported_methods_get_405_json(alice, alice_id):
    response = alice.put(f"/api/connectors/status/{alice_id}", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_api_paths_get_404_json(alice):
    response = alice.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_etag_unchanged_gives_304(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    first = alice.get(f"/api/connectors/status/{alice_id}")
    etag = first["ETag"]
    again = alice.get(f"/api/connectors/status/{alice_id}", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again["ETag"] == etag


@pytest.mark.redis
def test_an_unchanged_poll_costs_no_database_query(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    etag = alice.get(f"/api/connectors/status/{alice_id}")["ETag"]
    with CaptureQueriesContext(connection) as queries:
        response = alice.get(f"/api/connectors/status/{alice_id}", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert len(queries) == 0


def test_any_committed_change_breaks_the_old_etag(alice, alice_id, make_connection):
    connection_row = make_connection(alice_id, "github")
    etag = alice.get(f"/api/connectors/status/{alice_id}")["ETag"]
    # A write the status document does not otherwise show still bumps the row's version.
    connection_row.scopes = ["read:user", "repo"]
    connection_row.save()
    response = alice.get(f"/api/connectors/status/{alice_id}", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag


def test_status_never_contains_token_fields(alice, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    body = status_of(alice, alice_id)
    text = str(body)
    assert row.access_token not in text and row.refresh_token not in text
    assert "token" not in str(body["data"]["platforms"]["github"].keys())
