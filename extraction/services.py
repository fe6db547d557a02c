"""Extraction job lifecycle. Each step also records the sync on the connection, through the
model, so the user's cached status is invalidated like any other write."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from connectors import selectors
from connectors.errors import ConnectionRequired, InvalidJobTransition, JobNotFound
from connectors.ids import normalize_job_id, normalize_user_id
from connectors.models import SyncStatus
from connectors.providers import get_provider
from connectors.services import connection_set_sync_status
from extraction.models import ExtractionJob, JobStatus


def extraction_job_create(*, user_id: str, provider: str) -> ExtractionJob:
    uid = normalize_user_id(user_id)
    name = get_provider(provider).name
    with transaction.atomic():
        connection = selectors.connection_get_active(user_id=uid, provider=name)
        if connection is None:
            raise ConnectionRequired(f"Connect {name} before starting an extraction.")
        # The job will call the provider with this token: a token no key can decrypt fails
        # here, as a 409 naming the fixes (crypto.TokenDecryptionError), not in the job.
        connection.access_token  # noqa: B018 - decrypts
        job = ExtractionJob.objects.create(user_id=uid, provider=name)
        connection_set_sync_status(user_id=uid, provider=name, sync_status=SyncStatus.PENDING)
    return job


def _locked_job(job_id: str) -> ExtractionJob:
    job = ExtractionJob.objects.select_for_update().filter(pk=normalize_job_id(job_id)).first()
    if job is None:
        raise JobNotFound("No such extraction job.")
    return job


def extraction_job_start(*, job_id: str) -> ExtractionJob:
    with transaction.atomic():
        job = _locked_job(job_id)
        if job.status != JobStatus.QUEUED:
            raise InvalidJobTransition(f"Job is {job.status}, not queued.")
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.save()
        connection_set_sync_status(
            user_id=str(job.user_id), provider=job.provider, sync_status=SyncStatus.RUNNING
        )
    return job


def extraction_job_progress(*, job_id: str, progress: int, items_extracted: int) -> ExtractionJob:
    with transaction.atomic():
        job = _locked_job(job_id)
        if job.status != JobStatus.RUNNING:
            raise InvalidJobTransition(f"Job is {job.status}, not running.")
        job.progress = max(0, min(100, progress))
        job.items_extracted = max(0, items_extracted)
        job.save()
    return job


def extraction_job_finish(
    *, job_id: str, succeeded: bool, items_extracted: int | None = None, error: str = ""
) -> ExtractionJob:
    with transaction.atomic():
        job = _locked_job(job_id)
        if job.status in JobStatus.finished():
            raise InvalidJobTransition(f"Job already {job.status}.")
        job.status = JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED
        job.finished_at = timezone.now()
        job.started_at = job.started_at or job.finished_at
        if succeeded:
            job.progress = 100
        if items_extracted is not None:
            job.items_extracted = max(0, items_extracted)
        job.error = "" if succeeded else error[:2000]
        job.save()
        connection_set_sync_status(
            user_id=str(job.user_id),
            provider=job.provider,
            sync_status=SyncStatus.SUCCESS if succeeded else SyncStatus.FAILED,
            error=job.error,
        )
    return job
