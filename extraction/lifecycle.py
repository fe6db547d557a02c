"""Extraction job state transitions, each one transaction under the job's row lock.

A worker passes the generation its task was enqueued with (a fencing token): once the job was
cancelled, recovered or given a newer task, that worker's transitions change nothing and return
None / False. Each step that the dashboard sees is recorded on the connection in the same
transaction, so the user's cached status is invalidated like any other write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from connectors.errors import InvalidJobTransition, JobNotFound
from connectors.ids import normalize_job_id
from connectors.models import ConnectionStatus, PlatformConnection, SyncStatus
from connectors.services import connection_set_sync_status
from extraction.models import ExtractedItem, ExtractionJob, JobStatus

CANCELLED_MESSAGE = "The sync was cancelled."


def locked_job(job_id: object) -> ExtractionJob:
    job = ExtractionJob.objects.select_for_update().filter(pk=normalize_job_id(job_id)).first()
    if job is None:
        raise JobNotFound("No such extraction job.")
    return job


def _current(job: ExtractionJob, generation: int | None, status: str) -> bool:
    return generation is None or (job.generation == generation and job.status == status)


def _sync_status(job: ExtractionJob, status: SyncStatus, error: str = "") -> None:
    connection_set_sync_status(
        user_id=str(job.user_id), provider=job.provider, sync_status=status, error=error
    )


def extraction_job_start(*, job_id: object, generation: int | None = None) -> ExtractionJob | None:
    """Queued -> running. None if `generation` is no longer the job's current task."""
    with transaction.atomic():
        job = locked_job(job_id)
        if not _current(job, generation, JobStatus.QUEUED):
            return None
        if job.status != JobStatus.QUEUED:
            raise InvalidJobTransition(f"Job is {job.status}, not queued.")
        now = timezone.now()
        job.status = JobStatus.RUNNING
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.run_after = None
        job.save()
        _sync_status(job, SyncStatus.RUNNING)
    return job


def extraction_job_heartbeat(*, job_id: object, generation: int) -> bool:
    """The worker is alive; False if the job is no longer this worker's to run.

    QuerySet.update sends no post_save: heartbeats are not public, so no cache is touched.
    """
    return (
        ExtractionJob.objects.filter(
            pk=normalize_job_id(job_id), generation=generation, status=JobStatus.RUNNING
        ).update(heartbeat_at=timezone.now())
        == 1
    )


def extraction_job_progress(
    *, job_id: object, progress: int, items_extracted: int
) -> ExtractionJob:
    with transaction.atomic():
        job = locked_job(job_id)
        if job.status != JobStatus.RUNNING:
            raise InvalidJobTransition(f"Job is {job.status}, not running.")
        job.progress = max(0, min(100, progress))
        job.items_extracted = max(0, items_extracted)
        job.save()
    return job


def extraction_job_record_page(
    *,
    job_id: object,
    generation: int,
    items: Sequence[ExtractedItem],
    cursor: str,
    progress: int,
    rate: tuple[int, datetime] | None,
) -> bool:
    """Store one page's items (upserted: a re-sync updates, never duplicates) and the job's
    progress in one transaction. False if the job is no longer this worker's."""
    unique = list({item.external_id: item for item in items}.values())
    with transaction.atomic():
        job = locked_job(job_id)
        if not _current(job, generation, JobStatus.RUNNING):
            return False
        if unique:
            ExtractedItem.objects.bulk_create(
                unique,
                update_conflicts=True,
                unique_fields=["connection", "external_id"],
                update_fields=["kind", "data", "last_job_id", "updated_at"],
            )
        job.items_extracted += len(unique)
        job.cursor = cursor
        job.progress = max(job.progress, max(0, min(99, progress)))
        job.heartbeat_at = timezone.now()
        if rate is not None:
            job.rate_remaining, job.rate_reset_at = rate
        job.save()  # post_save invalidates the job's cached entry on commit
    return True


def extraction_job_defer(
    *, job_id: object, generation: int, until: datetime, rate: tuple[int, datetime] | None
) -> ExtractionJob | None:
    """Running -> queued until `until`; the caller enqueues its next task in this transaction."""
    with transaction.atomic():
        job = locked_job(job_id)
        if not _current(job, generation, JobStatus.RUNNING):
            return None
        job.status = JobStatus.QUEUED
        job.run_after = until
        job.heartbeat_at = timezone.now()
        if rate is not None:
            job.rate_remaining, job.rate_reset_at = rate
        job.save()
        _sync_status(job, SyncStatus.PENDING)
    return job


def extraction_job_finish(
    *,
    job_id: object,
    succeeded: bool,
    items_extracted: int | None = None,
    error: str = "",
    generation: int | None = None,
    expire_connection: bool = False,
) -> ExtractionJob | None:
    """Running -> succeeded / failed, with the connection's last_sync_* in the same
    transaction. None if `generation` is no longer the job's current task."""
    with transaction.atomic():
        job = locked_job(job_id)
        if not _current(job, generation, JobStatus.RUNNING):
            return None
        if job.status in JobStatus.finished():
            raise InvalidJobTransition(f"Job already {job.status}.")
        _finish(job, succeeded=succeeded, error=error, items_extracted=items_extracted)
        if expire_connection:
            connection = (
                PlatformConnection.objects.select_for_update()
                .for_user(job.user_id)
                .filter(provider=job.provider)
                .first()
            )
            if connection is not None:
                connection.status = ConnectionStatus.EXPIRED
                connection.save(update_fields=["status", "updated_at"])
    return job


def _finish(
    job: ExtractionJob,
    *,
    succeeded: bool,
    error: str,
    items_extracted: int | None = None,
    status: str | None = None,
) -> None:
    job.status = status or (JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED)
    job.finished_at = timezone.now()
    job.started_at = job.started_at or job.finished_at
    job.run_after = None
    job.cursor = ""
    if succeeded:
        job.progress = 100
    if items_extracted is not None:
        job.items_extracted = max(0, items_extracted)
    job.error = "" if succeeded else error[:2000]
    job.save()
    _sync_status(job, SyncStatus.SUCCESS if succeeded else SyncStatus.FAILED, job.error)


def extraction_job_cancel(*, job_id: object, user_id: str | None) -> ExtractionJob:
    """Queued / running -> cancelled. A worker running it stops at its next page."""
    with transaction.atomic():
        job = locked_job(job_id)
        if user_id is not None and str(job.user_id) != user_id:
            raise JobNotFound("No such extraction job.")
        if job.status in JobStatus.finished():
            raise InvalidJobTransition(f"Job already {job.status}.")
        _finish(job, succeeded=False, error=CANCELLED_MESSAGE, status=JobStatus.CANCELLED)
    return job


def extraction_job_orphaned(job: ExtractionJob, *, give_up: bool) -> None:
    """The worker running `job` (locked by the caller) is gone: fail it, or put it back in the
    queue (the caller enqueues the new task in the same transaction)."""
    if give_up:
        _finish(
            job,
            succeeded=False,
            error=(
                f"The sync was interrupted {job.recoveries + 1} times (its worker stopped); "
                "start it again."
            ),
        )
        return
    job.recoveries += 1
    job.status = JobStatus.QUEUED
    job.heartbeat_at = timezone.now()
    job.save()
    _sync_status(job, SyncStatus.PENDING)
