"""Writes the API and the commands call: start a sync (its job and its task in one
transaction), cancel one, schedule syncs for stale connections. Job state transitions
themselves live in extraction.lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors import selectors
from connectors.errors import ConnectionRequired, JobAlreadyActive
from connectors.ids import normalize_user_id
from connectors.models import ConnectionStatus, PlatformConnection, SyncStatus
from connectors.providers import get_provider
from connectors.services import connection_set_sync_status
from extraction import lifecycle, queue, tasks
from extraction.models import ExtractionJob, JobStatus

# Kept importable from here: the lifecycle's transitions are part of the services' surface.
extraction_job_start = lifecycle.extraction_job_start
extraction_job_progress = lifecycle.extraction_job_progress
extraction_job_finish = lifecycle.extraction_job_finish
InvalidJobTransition = lifecycle.InvalidJobTransition


def _already_active(user_id: str, provider: str) -> JobAlreadyActive:
    active = (
        ExtractionJob.objects.filter(
            user_id=user_id, provider=provider, status__in=JobStatus.active()
        )
        .values_list("pk", flat=True)
        .first()
    )
    return JobAlreadyActive(
        f"A {provider} sync is already queued or running for this user.", job_id=str(active)
    )


def extraction_job_create(*, user_id: str, provider: str) -> ExtractionJob:
    """Queue a sync: the job row and its task commit together, or neither does."""
    uid = normalize_user_id(user_id)
    name = get_provider(provider).name
    with transaction.atomic():
        connection = selectors.connection_get_active(user_id=uid, provider=name)
        if connection is None:
            raise ConnectionRequired(f"Connect {name} before starting an extraction.")
        # The job will call the provider with this token: a token no key can decrypt fails
        # here, as a 409 naming the fixes (crypto.TokenDecryptionError), not in the job.
        connection.access_token  # noqa: B018 - decrypts
        try:
            # A savepoint: the unique violation (one active job per user and provider) must
            # leave the transaction usable for the lookup of the job that won.
            with transaction.atomic():
                job = ExtractionJob.objects.create(
                    user_id=uid, provider=name, heartbeat_at=timezone.now()
                )
        except IntegrityError as e:
            raise _already_active(uid, name) from e
        tasks.enqueue(job)
        connection_set_sync_status(user_id=uid, provider=name, sync_status=SyncStatus.PENDING)
    return job


def extraction_job_cancel(*, job_id: object, user_id: str | None) -> ExtractionJob:
    """Cancel a queued or running job (`user_id`: the owner, or None for the service role)."""
    with transaction.atomic():
        job = lifecycle.extraction_job_cancel(job_id=job_id, user_id=user_id)
        queue.task_discard(job.task_id)
    return job


@dataclass(frozen=True, slots=True)
class Scheduled:
    enqueued: int
    already_active: int
    gone: int


def extraction_syncs_schedule(
    *, older_than: timedelta, provider: str | None = None, batch_size: int = 500
) -> Scheduled:
    """Queue a sync for every connected connection whose last sync finished before
    `older_than` ago (or never ran), `batch_size` connections per transaction."""
    cutoff = timezone.now() - older_than
    due = (
        PlatformConnection.objects.active()
        .filter(status=ConnectionStatus.CONNECTED)
        .exclude(last_sync_at__gte=cutoff)
        .order_by("pk")
    )
    if provider is not None:
        due = due.filter(provider=get_provider(provider).name)
    enqueued = already_active = gone = 0
    last_pk = 0
    while True:
        batch = list(
            due.filter(pk__gt=last_pk).values_list("pk", "user_id", "provider")[:batch_size]
        )
        if not batch:
            return Scheduled(enqueued, already_active, gone)
        last_pk = batch[-1][0]
        with transaction.atomic():
            for _, user_id, name in batch:
                try:
                    extraction_job_create(user_id=str(user_id), provider=name)
                    enqueued += 1
                except JobAlreadyActive:
                    already_active += 1
                except ConnectionRequired:
                    gone += 1  # disconnected since the batch was read
