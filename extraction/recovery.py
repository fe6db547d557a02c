"""Jobs whose worker died (SIGKILL, a lost host, an out-of-memory kill): django-tasks-db never
revisits a task left `RUNNING`, so every worker sweeps for them (`manage.py run_worker`)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from extraction import lifecycle, queue, tasks
from extraction.models import ExtractionJob, JobStatus

logger = logging.getLogger("extraction.recovery")
_BATCH = 100


@dataclass(frozen=True, slots=True)
class Recovered:
    requeued: int = 0
    failed: int = 0


def extraction_jobs_recover() -> Recovered:
    """Queue again (or, after EXTRACTION_MAX_RECOVERIES, fail) every active job whose worker
    has been silent for EXTRACTION_STALE_SECONDS and whose task nobody will run."""
    cutoff = timezone.now() - timedelta(seconds=settings.EXTRACTION_STALE_SECONDS)
    stale = ExtractionJob.objects.filter(status__in=JobStatus.active(), heartbeat_at__lt=cutoff)
    requeued = failed = 0
    for pk in stale.values_list("pk", flat=True)[:_BATCH]:
        with transaction.atomic():
            # SKIP LOCKED: a job some transaction holds is alive (or being recovered already).
            job = stale.select_for_update(skip_locked=True).filter(pk=pk).first()
            if job is None or not queue.task_orphaned(job.task_id, claimed_before=cutoff):
                continue
            queue.task_abandon(job.task_id)
            give_up = job.recoveries >= settings.EXTRACTION_MAX_RECOVERIES
            lifecycle.extraction_job_orphaned(job, give_up=give_up)
            if give_up:
                failed += 1
            else:
                tasks.enqueue(job)
                requeued += 1
            logger.warning(
                "Extraction job %s lost its worker: %s", job.pk, "failed" if give_up else "requeued"
            )
    return Recovered(requeued, failed)


def start_sweeper() -> threading.Thread:
    """A daemon thread running extraction_jobs_recover() every
    EXTRACTION_RECOVER_INTERVAL_SECONDS, with its own database connection."""

    def sweep() -> None:
        while True:
            try:
                close_old_connections()
                extraction_jobs_recover()
            except Exception:
                logger.exception("Recovering orphaned extraction jobs failed")
                connection.close()
            time.sleep(settings.EXTRACTION_RECOVER_INTERVAL_SECONDS)

    thread = threading.Thread(target=sweep, name="extraction-recovery", daemon=True)
    thread.start()
    return thread
