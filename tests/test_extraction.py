from __future__ import annotations

import uuid

import pytest

from connectors.models import PlatformConnection
from extraction import services
from extraction.models import ExtractionJob
from tests.support.clients import status_of

pytestmark = pytest.mark.django_db(transaction=True)


def _start(client, provider: str = "github"):
    return client.post("/api/extraction/jobs", {"provider": provider}, format="json")


def test_starting_a_job_needs_a_connection(alice):
    response = _start(alice)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_connected"


def test_a_job_runs_through_its_lifecycle_and_the_status_follows(alice, alice_id, make_connection):
    make_connection(alice_id, "github", last_sync_status="success")
    response = _start(alice)
    assert response.status_code == 201
    job = response.json()["data"]
    assert job["status"] == "queued" and job["user_id"] == alice_id
    assert (
        status_of(alice, alice_id)["data"]["platforms"]["github"]["last_sync_status"] == "pending"
    )

    services.extraction_job_start(job_id=job["id"])
    assert (
        status_of(alice, alice_id)["data"]["platforms"]["github"]["last_sync_status"] == "running"
    )
    services.extraction_job_progress(job_id=job["id"], progress=40, items_extracted=12)
    services.extraction_job_finish(job_id=job["id"], succeeded=True, items_extracted=30)
    platform = status_of(alice, alice_id)["data"]["platforms"]["github"]
    assert platform["last_sync_status"] == "success"
    assert platform["last_sync_at"] is not None

    fetched = alice.get(f"/api/extraction/jobs/{job['id']}").json()["data"]
    assert fetched["status"] == "succeeded" and fetched["items_extracted"] == 30
    assert fetched["progress"] == 100


def test_a_failed_job_marks_the_sync_failed(alice, alice_id, make_connection):
    make_connection(alice_id, "spotify")
    job = ExtractionJob.objects.get(pk=_start(alice, "spotify").json()["data"]["id"])
    services.extraction_job_start(job_id=str(job.pk))
    services.extraction_job_finish(job_id=str(job.pk), succeeded=False, error="HTTP 429")
    assert (
        status_of(alice, alice_id)["data"]["platforms"]["spotify"]["last_sync_status"] == "failed"
    )
    row = PlatformConnection.objects.get(user_id=alice_id, provider="spotify")
    assert row.last_sync_error == "HTTP 429"


@pytest.mark.redis
def test_job_reads_are_cached_and_invalidated_on_every_update(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    job_id = _start(alice).json()["data"]["id"]
    assert alice.get(f"/api/extraction/jobs/{job_id}").json()["cached"] is False
    assert alice.get(f"/api/extraction/jobs/{job_id}").json()["cached"] is True
    services.extraction_job_start(job_id=job_id)
    body = alice.get(f"/api/extraction/jobs/{job_id}").json()
    assert body["cached"] is False and body["data"]["status"] == "running"


def test_someone_elses_job_looks_like_a_missing_one(alice, bob, alice_id, make_connection):
    make_connection(alice_id, "github")
    job_id = _start(alice).json()["data"]["id"]
    other = bob.get(f"/api/extraction/jobs/{job_id}")
    missing = bob.get(f"/api/extraction/jobs/{uuid.uuid4()}")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    assert bob.get("/api/extraction/jobs/not-a-uuid").status_code == 400


def test_the_service_role_starts_jobs_for_a_named_user(service, alice_id, make_connection):
    make_connection(alice_id, "github")
    assert (
        service.post("/api/extraction/jobs", {"provider": "github"}, format="json").status_code
        == 400
    )
    response = service.post(
        "/api/extraction/jobs", {"provider": "github", "user_id": alice_id}, format="json"
    )
    assert response.status_code == 201


def test_a_user_cannot_start_a_job_for_someone_else(alice, bob_id, make_connection):
    make_connection(bob_id, "github")
    response = alice.post(
        "/api/extraction/jobs", {"provider": "github", "user_id": bob_id}, format="json"
    )
    assert response.status_code == 403


def test_finishing_twice_is_refused(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    job_id = _start(alice).json()["data"]["id"]
    services.extraction_job_finish(job_id=job_id, succeeded=True)
    with pytest.raises(services.InvalidJobTransition):
        services.extraction_job_finish(job_id=job_id, succeeded=False)
