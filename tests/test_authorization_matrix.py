"""Who may act on whom: every endpoint x every kind of caller, with exact status codes.

Columns: alice on herself, alice on bob (who exists, with data), alice on a user who does not
exist, alice with a malformed id, the service role on bob, and no token at all. Endpoints without
a user in the URL take it from the query (authorize) or the body (callback, extraction jobs);
extraction jobs are addressed by job id, where someone else's job is a 404 like a missing one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from extraction.models import ExtractionJob
from tests.support.clients import client_for

pytestmark = pytest.mark.django_db

COLUMNS = ("own", "other", "other_missing", "malformed", "service", "no_token")
MALFORMED = "not-a-uuid"

# endpoint -> expected status per column (same order as COLUMNS)
EXPECTED: dict[str, tuple[int, ...]] = {
    "status": (200, 403, 403, 400, 200, 401),
    "disconnect": (200, 403, 403, 400, 200, 401),
    "reset": (200, 403, 403, 400, 200, 401),
    "authorize": (200, 403, 403, 400, 200, 401),
    "callback": (200, 403, 403, 400, 200, 401),
    "warm": (200, 403, 403, 400, 200, 401),
    "extraction_create": (201, 403, 403, 400, 201, 401),
    "extraction_list": (200, 403, 403, 400, 200, 401),
    "extraction_job": (200, 404, 404, 400, 200, 401),
    "extraction_cancel": (200, 404, 404, 400, 200, 401),
    "cache_stats": (403, 403, 403, 403, 200, 401),
}
CELLS = [(endpoint, column) for endpoint in EXPECTED for column in COLUMNS]


@dataclass
class World:
    alice_id: str
    bob_id: str
    missing_id: str
    jobs: dict[str, str]  # user id -> that user's finished github job
    active: dict[str, str]  # user id -> that user's queued spotify job
    provider: Any

    def target(self, column: str) -> str:
        return {
            "own": self.alice_id,
            "other": self.bob_id,
            "other_missing": self.missing_id,
            "malformed": MALFORMED,
            "service": self.bob_id,
            "no_token": self.alice_id,
        }[column]

    def client(self, column: str) -> APIClient:
        if column == "service":
            return client_for(None, service_role=True)
        if column == "no_token":
            return APIClient()
        return client_for(self.alice_id)


@pytest.fixture
def world(alice_id, bob_id, make_connection, oauth_provider) -> World:
    jobs, active = {}, {}
    for user in (alice_id, bob_id):
        make_connection(user, "github")
        make_connection(user, "spotify")
        done = ExtractionJob.objects.create(user_id=user, provider="github", status="succeeded")
        jobs[user] = str(done.pk)
        active[user] = str(ExtractionJob.objects.create(user_id=user, provider="spotify").pk)
    return World(alice_id, bob_id, str(uuid.uuid4()), jobs, active, oauth_provider)


def _state_for(user_id: str) -> str:
    service = client_for(None, service_role=True)
    response = service.get(f"/api/connectors/github/authorize?user_id={user_id}")
    assert response.status_code == 200
    return str(response.json()["data"]["state"])


def call(world: World, endpoint: str, column: str) -> Any:
    client, target = world.client(column), world.target(column)
    if endpoint == "status":
        return client.get(f"/api/connectors/status/{target}")
    if endpoint == "disconnect":
        return client.delete(f"/api/connectors/github/{target}")
    if endpoint == "reset":
        return client.post(f"/api/connectors/reset/{target}")
    if endpoint == "authorize":
        return client.get(f"/api/connectors/github/authorize?user_id={target}")
    if endpoint == "callback":
        # A genuine state for the target when one can exist, so only authorization decides.
        state = _state_for(target) if target != MALFORMED else "x"
        world.provider.succeed()
        body = {"provider": "github", "code": "c", "state": state, "user_id": target}
        return client.post("/api/connectors/callback", body, format="json")
    if endpoint == "extraction_create":
        body = {"provider": "github", "user_id": target}
        return client.post("/api/extraction/jobs", body, format="json")
    if endpoint == "warm":
        return client.post(f"/api/connectors/status/{target}/warm")
    if endpoint == "extraction_list":
        return client.get(f"/api/extraction/jobs?user_id={target}")
    if endpoint == "extraction_job":
        job = MALFORMED if target == MALFORMED else world.jobs.get(target, str(uuid.uuid4()))
        return client.get(f"/api/extraction/jobs/{job}")
    if endpoint == "extraction_cancel":
        job = MALFORMED if target == MALFORMED else world.active.get(target, str(uuid.uuid4()))
        return client.delete(f"/api/extraction/jobs/{job}")
    if endpoint == "cache_stats":
        return client.get("/api/admin/cache-stats")
    raise AssertionError(endpoint)


@pytest.mark.parametrize(("endpoint", "column"), CELLS, ids=[f"{e}-{c}" for e, c in CELLS])
def test_authorization_matrix(world, endpoint, column):
    expected = EXPECTED[endpoint][COLUMNS.index(column)]
    response = call(world, endpoint, column)
    assert response.status_code == expected, (endpoint, column, response.content)
    body = response.json()
    assert body["success"] is (expected < 400)
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", list(EXPECTED))
def test_refusals_do_not_reveal_whether_the_other_user_exists(world, endpoint):
    existing = call(world, endpoint, "other")
    missing = call(world, endpoint, "other_missing")
    assert existing.status_code == missing.status_code
    assert existing.content == missing.content


def test_the_matrix_covers_every_api_route():
    from connectors.api import urls as connectors_urls
    from extraction.api import urls as extraction_urls

    routes = {p.name for p in connectors_urls.urlpatterns + extraction_urls.urlpatterns}
    # status, warm, callback, reset, authorize, disconnect, cache-stats, and the two job routes
    # (list + create on one, retrieve + cancel on the other): 11 endpoints on 9 routes.
    assert len(routes) == 9 and len(EXPECTED) == 11
    assert len(CELLS) == 66


def test_the_django_admin_needs_a_staff_login(client, django_user_model):
    assert client.get("/admin/").status_code == 302  # to the login page
    # force_login: django-axes refuses Client.login(), which authenticates without a request
    # (tests/test_admin_login.py drives the real login form).
    client.force_login(django_user_model.objects.create_user("mallory", password="pw-123456789"))
    response = client.get("/admin/connectors/platformconnection/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
