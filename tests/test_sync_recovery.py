"""A worker that dies mid-job (SIGKILL) leaves a job that another worker picks up, or that is
failed after EXTRACTION_MAX_RECOVERIES: never `running` forever. No other worker runs while
these tests do, so the one that is killed is the one that claimed the job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from connectors.models import PlatformConnection
from extraction import recovery, services
from extraction.models import ExtractedItem, ExtractionJob
from tests.support.providers import FakeProviders
from tests.support.worker import WorkerProcess, connect, start_sync, wait_for, wait_for_job

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders(page_size=3) as providers:
        yield providers


def _orphan(job_id, *, recoveries=0):
    """Make the job look like its worker died a minute ago, mid-run."""
    job = ExtractionJob.objects.get(pk=job_id)
    long_ago = timezone.now() - timedelta(minutes=1)
    DBTaskResult.objects.filter(pk=job.task_id).update(
        status=TaskResultStatus.RUNNING, started_at=long_ago
    )
    ExtractionJob.objects.filter(pk=job_id).update(
        status="running", heartbeat_at=long_ago, recoveries=recoveries
    )
    return job.task_id


def test_a_job_whose_worker_was_killed_is_picked_up_by_another_worker(
    fake, alice_id, make_connection
):
    account = fake.account("github", items=7, hold_page=2)
    connection = connect(make_connection, alice_id, account)
    doomed = WorkerProcess(fake.env()).start()
    try:
        job_id = start_sync(alice_id, "github")
        wait_for(account.held.is_set, what="the worker to ask for page 2")
        first_task = ExtractionJob.objects.get(pk=job_id).task_id
        doomed.kill()
    finally:
        doomed.stop()
    account.release.set()
    assert ExtractionJob.objects.get(pk=job_id).status == "running"

    rescuer = WorkerProcess(fake.env()).start()
    try:
        job = wait_for_job(job_id, timeout=60)
    finally:
        rescuer.stop()

    assert job.status == "succeeded" and job.recoveries == 1
    assert job.items_extracted == 7  # page 1 was stored once; the rescue resumed at page 2
    assert ExtractedItem.objects.filter(connection=connection).count() == 7
    lost = DBTaskResult.objects.get(pk=first_task)
    assert lost.status == TaskResultStatus.FAILED
    assert lost.exception_class_path == "extraction.recovery.WorkerLost"


def test_a_job_that_keeps_losing_its_worker_is_failed_with_a_clear_error(
    settings, alice_id, make_connection
):
    settings.EXTRACTION_STALE_SECONDS = 30
    settings.EXTRACTION_MAX_RECOVERIES = 2
    make_connection(alice_id, "github")
    job = services.extraction_job_create(user_id=alice_id, provider="github")
    _orphan(job.pk, recoveries=2)

    assert recovery.extraction_jobs_recover() == recovery.Recovered(requeued=0, failed=1)

    job.refresh_from_db()
    assert job.status == "failed" and "interrupted 3 times" in job.error
    assert DBTaskResult.objects.get(pk=job.task_id).status == TaskResultStatus.FAILED
    connection = PlatformConnection.objects.get(user_id=alice_id, provider="github")
    assert connection.last_sync_status == "failed" and "interrupted" in connection.last_sync_error


def test_recovery_leaves_queued_jobs_and_live_workers_alone(
    settings, alice_id, bob_id, make_connection
):
    settings.EXTRACTION_STALE_SECONDS = 30
    make_connection(alice_id, "github")
    make_connection(bob_id, "github")
    waiting = services.extraction_job_create(user_id=alice_id, provider="github")
    running = services.extraction_job_create(user_id=bob_id, provider="github")
    long_ago = timezone.now() - timedelta(minutes=5)
    # A backlog: queued for five minutes, its task still waiting for a worker.
    ExtractionJob.objects.filter(pk=waiting.pk).update(heartbeat_at=long_ago)
    # A live worker: it claimed the task and reported a second ago.
    _orphan(running.pk)
    ExtractionJob.objects.filter(pk=running.pk).update(heartbeat_at=timezone.now())

    assert recovery.extraction_jobs_recover() == recovery.Recovered(0, 0)
    assert ExtractionJob.objects.get(pk=waiting.pk).generation == 1
    assert ExtractionJob.objects.get(pk=running.pk).status == "running"
