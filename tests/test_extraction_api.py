"""The job API around syncs: one active job per user and provider (409 with its id), listing,
cancelling, warming the status entry at sign-in, and `manage.py schedule_syncs`."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.db import transaction
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from connectors.errors import JobAlreadyActive
from extraction import services
from extraction.models import ExtractionJob

pytestmark = pytest.mark.django_db(transaction=True)


def _start(client, provider="github", **extra):
    return client.post("/api/extraction/jobs", {"provider": provider, **extra}, format="json")


def test_a_job_and_its_task_are_committed_together(alice, alice_id, make_connection):
    make_connection(alice_id, "github")
    job = ExtractionJob.objects.get(pk=_start(alice).json()["data"]["id"])
    task = DBTaskResult.objects.get(pk=job.task_id)
    assert task.status == TaskResultStatus.READY
    assert task.args_kwargs["kwargs"] == {"job_id": str(job.pk), "generation": 1}


def test_the_task_exists_inside_the_creating_transaction_and_rolls_back_with_it(
    alice_id, make_connection
):
    # An on-commit enqueue would leave a committed job without a task until the callback ran
    # (and forever if the process died in between): here the task row is there before commit.
    make_connection(alice_id, "github")

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        job = services.extraction_job_create(user_id=alice_id, provider="github")
        assert DBTaskResult.objects.filter(pk=job.task_id, status=TaskResultStatus.READY).exists()
        raise Abort
    assert not ExtractionJob.objects.exists() and not DBTaskResult.objects.exists()


def test_a_second_sync_of_the_same_provider_answers_409_with_the_active_job(
    alice, alice_id, make_connection
):
    make_connection(alice_id, "github")
    make_connection(alice_id, "spotify")
    first = _start(alice).json()["data"]["id"]
    second = _start(alice)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "job_already_active"
    assert second.json()["error"]["job_id"] == first
    assert _start(alice, "spotify").status_code == 201  # another provider is another job
    assert ExtractionJob.objects.filter(user_id=alice_id).count() == 2


@pytest.mark.postgres
def test_concurrent_requests_create_exactly_one_active_job(alice_id, make_connection):
    make_connection(alice_id, "reddit")
    results: list[str] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        try:
            barrier.wait(5)
            job = services.extraction_job_create(user_id=alice_id, provider="reddit")
            results.append(f"created {job.pk}")
        except JobAlreadyActive as e:
            results.append(f"active {e.extra['job_id']}")
        finally:
            db.close()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    created = [r.split()[1] for r in results if r.startswith("created")]
    assert len(results) == 4 and len(created) == 1
    assert sorted(results) == sorted([f"created {created[0]}"] + [f"active {created[0]}"] * 3)
    assert DBTaskResult.objects.count() == 1


def test_a_user_lists_only_their_own_jobs_with_filters(
    alice, bob, service, alice_id, bob_id, make_connection
):
    for provider in ("github", "spotify"):
        make_connection(alice_id, provider)
    make_connection(bob_id, "github")
    _start(alice), _start(alice, "spotify"), _start(bob)
    ExtractionJob.objects.filter(user_id=alice_id, provider="spotify").update(status="failed")

    mine = alice.get("/api/extraction/jobs").json()["data"]
    assert {j["provider"] for j in mine} == {"github", "spotify"}
    assert {j["user_id"] for j in mine} == {alice_id}
    failed = alice.get("/api/extraction/jobs?status=failed").json()["data"]
    assert [j["provider"] for j in failed] == ["spotify"]
    assert len(alice.get("/api/extraction/jobs?provider=github").json()["data"]) == 1
    assert len(alice.get("/api/extraction/jobs?limit=1").json()["data"]) == 1
    assert alice.get(f"/api/extraction/jobs?user_id={bob_id}").status_code == 403
    assert alice.get("/api/extraction/jobs?status=lost").status_code == 400
    assert alice.get("/api/extraction/jobs?provider=myspace").status_code == 400

    assert len(service.get("/api/extraction/jobs").json()["data"]) == 3
    for_bob = service.get(f"/api/extraction/jobs?user_id={bob_id}").json()["data"]
    assert [j["user_id"] for j in for_bob] == [bob_id]


def test_cancelling_a_queued_job_drops_its_task_and_frees_the_provider(
    alice, bob, alice_id, make_connection
):
    make_connection(alice_id, "github")
    job_id = _start(alice).json()["data"]["id"]
    task_id = ExtractionJob.objects.get(pk=job_id).task_id

    assert bob.delete(f"/api/extraction/jobs/{job_id}").status_code == 404
    response = alice.delete(f"/api/extraction/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "cancelled"
    assert not DBTaskResult.objects.filter(pk=task_id).exists()
    again = alice.delete(f"/api/extraction/jobs/{job_id}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_job_transition"
    assert alice.delete(f"/api/extraction/jobs/{uuid.uuid4()}").status_code == 404
    assert alice.delete("/api/extraction/jobs/nope").json()["error"]["code"] == "invalid_job_id"
    assert _start(alice).status_code == 201


@pytest.mark.redis
def test_warming_loads_the_status_entry_for_the_next_read(
    alice, bob, service, alice_id, make_connection
):
    make_connection(alice_id, "github")
    url = f"/api/connectors/status/{alice_id}/warm"
    assert bob.post(url).status_code == 403
    first = alice.post(url)
    assert first.status_code == 200
    assert first.json() == {"success": True, "data": {"user_id": alice_id, "already_cached": False}}
    assert service.post(url).json()["data"]["already_cached"] is True
    assert alice.get(f"/api/connectors/status/{alice_id}").json()["cached"] is True
    assert alice.get(url).status_code == 405


def test_schedule_syncs_queues_the_stale_connections_in_batches(alice_id, bob_id, make_connection):
    now = timezone.now()
    make_connection(alice_id, "github", last_sync_at=now - timedelta(hours=10))
    make_connection(alice_id, "spotify", last_sync_at=None)
    make_connection(alice_id, "reddit", last_sync_at=now - timedelta(hours=1))  # fresh
    make_connection(alice_id, "discord", is_active=False, status="disconnected")
    make_connection(bob_id, "github", last_sync_at=now - timedelta(hours=10), status="expired")
    make_connection(bob_id, "youtube", last_sync_at=now - timedelta(hours=10))
    services.extraction_job_create(user_id=bob_id, provider="youtube")

    out = StringIO()
    call_command("schedule_syncs", "--older-than", "6", "--batch-size", "1", stdout=out)

    assert "Queued 2 syncs" in out.getvalue() and "1 already queued or running" in out.getvalue()
    queued = {(str(u), p) for u, p in ExtractionJob.objects.values_list("user_id", "provider")}
    assert queued == {(alice_id, "github"), (alice_id, "spotify"), (bob_id, "youtube")}
    assert DBTaskResult.objects.count() == 3

    out = StringIO()
    call_command("schedule_syncs", "--older-than", "6", "--provider", "reddit", stdout=out)
    assert "Queued 0 syncs" in out.getvalue()
    with pytest.raises(CommandError, match="Unknown provider"):
        call_command("schedule_syncs", "--older-than", "6", "--provider", "myspace")
