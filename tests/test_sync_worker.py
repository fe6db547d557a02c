"""Syncs run end to end: the API queues a job, a real `manage.py run_worker` process runs it
against the stand-in provider APIs (real HTTP servers on 127.0.0.1), and the results land in
the database and the cache. One worker process serves the whole module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from connectors import cache
from connectors.crypto import decrypt
from connectors.models import PlatformConnection
from extraction.models import ExtractedItem
from tests.support.clients import status_of
from tests.support.provider_pages import PROVIDER_TEXT
from tests.support.providers import FakeProviders
from tests.support.worker import (
    WorkerProcess,
    connect,
    start_sync,
    wait_for_deferral,
    wait_for_job,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Items per account and the API requests they take at the stand-ins' page size of 3
# (Discord honours its documented limit of 200 exactly: 201 guilds are two pages).
CASES = {
    "github": (7, 3),
    "spotify": (7, 3),
    "google_calendar": (7, 3),
    "youtube": (7, 3),
    "discord": (201, 2),
    "linkedin": (1, 1),
    "reddit": (7, 3),
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    with FakeProviders(page_size=3) as providers:
        yield providers


@pytest.fixture(scope="module")
def worker(django_db_setup, fake) -> Iterator[WorkerProcess]:
    process = WorkerProcess(fake.env()).start()
    yield process
    process.stop()


@pytest.mark.parametrize("provider", list(CASES))
def test_a_sync_of_each_provider_runs_to_succeeded_through_a_worker(
    provider, fake, worker, alice_id, make_connection
):
    items, requests = CASES[provider]
    account = fake.account(provider, items=items)
    connection = connect(make_connection, alice_id, account)

    job = wait_for_job(start_sync(alice_id, provider), timeout=60)

    assert job.status == "succeeded", (job.error, worker.output()[-2000:])
    assert job.items_extracted == items and job.progress == 100
    assert ExtractedItem.objects.filter(connection=connection).count() == items
    assert account.api_requests == requests
    connection.refresh_from_db()
    assert connection.last_sync_status == "success" and connection.last_sync_at is not None
    assert connection.last_sync_error == ""


def test_running_the_sync_again_updates_the_items_and_never_duplicates(
    fake, worker, alice_id, make_connection
):
    account = fake.account("github", items=7)
    connection = connect(make_connection, alice_id, account)
    first = wait_for_job(start_sync(alice_id, "github"))
    second = wait_for_job(start_sync(alice_id, "github"))

    assert first.status == second.status == "succeeded"
    assert second.items_extracted == 7
    rows = ExtractedItem.objects.filter(connection=connection)
    assert rows.count() == 7
    assert set(rows.values_list("last_job_id", flat=True)) == {second.pk}


def test_an_expired_access_token_is_refreshed_once_and_stored_encrypted(
    fake, worker, alice_id, make_connection
):
    account = fake.account("spotify", items=7, expired=True)
    old_token = account.access_token
    connection = connect(make_connection, alice_id, account)

    job = wait_for_job(start_sync(alice_id, "spotify"))

    assert job.status == "succeeded" and job.items_extracted == 7
    refreshes = fake.refresh_requests(account)
    assert len(refreshes) == 1
    assert refreshes[0]["form"]["grant_type"] == "refresh_token"
    assert refreshes[0]["form"]["client_id"] == "spotify-client"
    connection.refresh_from_db()
    assert connection.access_token == account.access_token != old_token
    assert connection.refresh_token == account.refresh_token  # none was sent back: kept
    assert connection.token_expires_at > timezone.now() + timedelta(minutes=50)
    stored = _raw_access_token(connection.pk)
    assert account.access_token not in stored and decrypt(stored) == account.access_token


def _raw_access_token(pk):
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute("SELECT access_token FROM connectors_platformconnection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_a_refused_refresh_expires_the_connection_and_asks_the_user_to_reconnect(
    fake, worker, alice, alice_id, make_connection
):
    account = fake.account("reddit", expired=True, refresh_refused=True)
    connection = connect(make_connection, alice_id, account)

    job = wait_for_job(start_sync(alice_id, "reddit"))

    assert job.status == "failed"
    assert "reconnect Reddit" in job.error
    assert PROVIDER_TEXT not in job.error and account.refresh_token not in job.error
    # Reddit authenticates its clients with HTTP Basic (the registry says so).
    assert fake.refresh_requests(account)[0]["authorization"].startswith("Basic ")
    connection.refresh_from_db()
    assert connection.status == "expired" and connection.last_sync_status == "failed"
    reddit = status_of(alice, alice_id)["data"]["platforms"]["reddit"]
    assert reddit["connected"] is False and reddit["status"] == "expired"


@pytest.mark.redis
def test_a_spent_budget_defers_the_job_to_the_reset_time_without_calling_the_provider(
    fake, worker, alice_id, make_connection
):
    account = fake.account("github", items=7)
    connect(make_connection, alice_id, account)
    reset_at = time.time() + 600
    cache.set_value(
        cache.platform_rate_limit_key(alice_id, "github"),
        {"remaining": 0, "reset_at": reset_at},
        600,
    )

    job = wait_for_deferral(start_sync(alice_id, "github"))

    assert account.api_requests == 0
    assert abs(job.run_after.timestamp() - reset_at) < 1
    task = DBTaskResult.objects.get(pk=job.task_id)
    assert task.status == TaskResultStatus.READY
    assert abs(task.run_after.timestamp() - reset_at) < 1
    connection = PlatformConnection.objects.get(user_id=alice_id, provider="github")
    assert connection.last_sync_status == "pending"


@pytest.mark.redis
def test_a_429_defers_the_job_and_stores_the_budget_until_the_reset(
    fake, worker, alice_id, make_connection
):
    account = fake.account("discord", throttle_for=90)
    connect(make_connection, alice_id, account)

    job = wait_for_deferral(start_sync(alice_id, "discord"))

    assert account.api_requests == 1
    assert 80 < (job.run_after - timezone.now()).total_seconds() <= 90
    assert job.rate_remaining == 0
    key = cache.platform_rate_limit_key(alice_id, "discord")
    assert cache.get_value(key)["remaining"] == 0
    ttl = cache.redis_client().ttl(cache.full_key(key))
    assert 80 < ttl <= 90


@pytest.mark.redis
def test_the_status_read_after_a_sync_is_fresh_then_cached(
    fake, worker, alice, alice_id, make_connection
):
    account = fake.account("youtube", items=4)
    connect(make_connection, alice_id, account, last_sync_status="failed")
    assert status_of(alice, alice_id)["cached"] is False
    assert status_of(alice, alice_id)["cached"] is True

    job = wait_for_job(start_sync(alice_id, "youtube"))
    assert job.status == "succeeded"

    first, second = status_of(alice, alice_id), status_of(alice, alice_id)
    assert first["cached"] is False and second["cached"] is True
    assert first["data"]["platforms"]["youtube"]["last_sync_status"] == "success"
    assert second["data"] == first["data"]
