"""A sync's edges, run in this process (the task's own function, no worker): retries, deadlines,
redirects, foreign next-page links, cancellation mid-run, the budget without Redis, and how each
provider's limits are read. Everything the providers answer comes from real HTTP servers on
127.0.0.1."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.outbound import Response
from connectors.providers import PROVIDERS
from extraction import tasks
from extraction.extractors import EXTRACTORS, for_provider
from extraction.models import ExtractedItem, ExtractionJob
from tests.support.provider_pages import PAGES, quota_headers, throttled
from tests.support.providers import FakeProviders
from tests.support.worker import connect, start_sync, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(settings) -> Iterator[FakeProviders]:
    with FakeProviders(page_size=3) as providers:
        settings.PROVIDER_API_BASES = {name: providers.api_base(name) for name in PROVIDERS}
        settings.OAUTH_CLIENTS = {
            name: {
                "client_id": f"{name}-client",
                "client_secret": f"{name}-secret",
                "token_url": f"{providers.api_base(name)}/token",
            }
            for name in PROVIDERS
        }
        settings.EXTRACTION_HTTP_DEADLINE = 2.0
        settings.EXTRACTION_HTTP_RETRIES = 2
        settings.EXTRACTION_RETRY_BACKOFF_SECONDS = 0.01
        settings.EXTRACTION_RETRY_BACKOFF_MAX_SECONDS = 0.05
        yield providers


@pytest.fixture
def elsewhere() -> Iterator[FakeProviders]:
    """Another host, which must never receive anything."""
    with FakeProviders() as providers:
        yield providers


def run(job_id) -> tuple[str, ExtractionJob]:
    job = ExtractionJob.objects.get(pk=job_id)
    outcome = tasks.run_extraction_job.call(job_id=str(job.pk), generation=job.generation)
    return outcome, ExtractionJob.objects.get(pk=job_id)


def test_5xx_answers_are_retried_and_the_sync_succeeds(fake, alice_id, make_connection):
    account = fake.account("google_calendar", items=7, fail_first=2)
    connect(make_connection, alice_id, account)
    outcome, job = run(start_sync(alice_id, "google_calendar"))
    assert outcome == "succeeded" and job.items_extracted == 7
    assert account.api_requests == 2 + 3


def test_a_provider_that_keeps_failing_fails_the_job_without_its_text(
    fake, alice_id, make_connection
):
    account = fake.account("github", fail_first=100)
    connection = connect(make_connection, alice_id, account)
    outcome, job = run(start_sync(alice_id, "github"))
    assert outcome == "failed" and account.api_requests == 3
    assert job.error == "GitHub answered HTTP 503 (3 attempts); try again later."
    connection.refresh_from_db()
    assert connection.last_sync_status == "failed" and connection.last_sync_error == job.error
    assert connection.status == "connected"  # a provider outage is not the user's problem


def test_a_slow_drip_body_is_cut_at_the_deadline(fake, settings, alice_id, make_connection):
    settings.EXTRACTION_HTTP_DEADLINE = 0.5
    settings.EXTRACTION_HTTP_RETRIES = 0
    account = fake.account("reddit", drip_seconds=0.05)
    connect(make_connection, alice_id, account)
    outcome, job = run(start_sync(alice_id, "reddit"))
    assert outcome == "failed"
    assert job.error == "Reddit did not answer in time (1 attempts); try again later."


def test_a_redirect_is_not_followed_and_the_token_stays_home(
    fake, elsewhere, alice_id, make_connection
):
    account = fake.account("spotify", redirect_to=f"{elsewhere.base}/spotify/v1/steal")
    connect(make_connection, alice_id, account)
    outcome, job = run(start_sync(alice_id, "spotify"))
    assert outcome == "failed" and "redirect (HTTP 302)" in job.error
    assert elsewhere.hits == []


def test_a_next_page_link_to_another_host_is_refused(fake, elsewhere, alice_id, make_connection):
    account = fake.account("github", next_link_to=f"{elsewhere.base}/user/repos?page=2")
    connection = connect(make_connection, alice_id, account)
    outcome, job = run(start_sync(alice_id, "github"))
    assert outcome == "failed" and "leads outside its API" in job.error
    assert elsewhere.hits == [] and account.api_requests == 1
    assert not ExtractedItem.objects.filter(connection=connection).exists()


def test_cancelling_a_running_job_stops_it_at_the_next_page(fake, alice, alice_id, make_connection):
    account = fake.account("youtube", items=9, hold_page=2)
    connection = connect(make_connection, alice_id, account)
    job_id = start_sync(alice_id, "youtube")
    outcomes: list[str] = []

    def work() -> None:
        from django.db import connection as db

        try:
            outcomes.append(run(job_id)[0])
        finally:
            db.close()

    thread = threading.Thread(target=work)
    thread.start()
    wait_for(account.held.is_set, what="page 2 to be asked for")
    response = alice.delete(f"/api/extraction/jobs/{job_id}")
    account.release.set()
    thread.join(10)

    assert response.status_code == 200 and response.json()["data"]["status"] == "cancelled"
    assert outcomes == ["superseded"]
    job = ExtractionJob.objects.get(pk=job_id)
    assert job.status == "cancelled" and job.items_extracted == 3
    assert ExtractedItem.objects.filter(connection=connection).count() == 3
    connection.refresh_from_db()
    assert connection.last_sync_status == "failed"
    assert connection.last_sync_error == "The sync was cancelled."


def test_without_redis_the_budget_lives_in_the_job_and_defers_it(
    fake, settings, alice_id, make_connection
):
    caches = copy.deepcopy(settings.CACHES)
    caches["default"] = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    settings.CACHES = caches
    account = fake.account("github", items=7, remaining=1, reset_in=300)
    connect(make_connection, alice_id, account)
    job_id = start_sync(alice_id, "github")

    outcome, job = run(job_id)
    assert outcome == "deferred" and account.api_requests == 1
    assert job.status == "queued" and job.rate_remaining == 0 and job.items_extracted == 3
    assert 290 < (job.run_after - timezone.now()).total_seconds() <= 300

    # Its next task, run early: the budget in the row still says "spent".
    outcome, job = run(job_id)
    assert outcome == "deferred" and account.api_requests == 1

    # The provider's window resets.
    ExtractionJob.objects.filter(pk=job_id).update(rate_reset_at=timezone.now())
    account.remaining = 5000
    outcome, job = run(job_id)
    assert outcome == "succeeded" and job.items_extracted == 7  # resumed at page 2


def test_every_registry_provider_has_an_extractor_and_a_stand_in():
    assert set(EXTRACTORS) == set(PROVIDERS) == set(PAGES)


@pytest.mark.parametrize("provider", list(PAGES))
def test_each_provider_s_spent_limit_is_read_as_a_wait(provider):
    status, headers, body = throttled(provider, 90)
    response = Response(
        status, {k.lower(): v for k, v in headers.items()}, json.dumps(body).encode()
    )
    now = timezone.now()
    wait = for_provider(provider).throttled_for(response, now)
    if provider == "youtube":  # the daily quota: until midnight Pacific Time
        assert wait is not None and 0 < wait <= 86400
    elif provider == "google_calendar":  # no Retry-After: a minute
        assert wait == 60
    else:
        assert wait is not None and 85 <= wait <= 91


@pytest.mark.parametrize("provider", ["github", "discord", "reddit"])
def test_each_provider_s_quota_headers_are_read(provider):
    headers = {k.lower(): v for k, v in quota_headers(provider, 41, 120).items()}
    now = timezone.now()
    quota = for_provider(provider).quota(Response(200, headers, b"[]"), now)
    assert quota is not None and quota.remaining == 41
    assert abs(quota.reset_at - (now + timedelta(seconds=120))) < timedelta(seconds=2)


def test_a_connection_removed_before_its_job_runs_fails_the_job_cleanly(
    fake, alice, alice_id, make_connection
):
    account = fake.account("discord")
    connect(make_connection, alice_id, account)
    job_id = start_sync(alice_id, "discord")
    assert alice.delete(f"/api/connectors/discord/{alice_id}").status_code == 200
    outcome, job = run(job_id)
    assert outcome == "failed" and job.error == "Discord is not connected; connect it to sync."
    assert account.api_requests == 0
