"""The task a worker runs for a job, and how a job gets its task: enqueued in the transaction
that changes the job, so that neither exists without the other (django-tasks-db writes the
task row through the same database connection)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.tasks import task

from extraction import lifecycle, runner
from extraction.models import ExtractionJob


def enqueue(job: ExtractionJob, *, run_after: datetime | None = None) -> None:
    """Give `job` a new task (and a new generation). Call inside the job's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue() belongs inside the transaction that changes the job.")
    job.generation += 1
    runnable = (
        run_extraction_job if run_after is None else run_extraction_job.using(run_after=run_after)
    )
    result = runnable.enqueue(job_id=str(job.pk), generation=job.generation)
    job.task_id = result.id
    job.save(update_fields=["generation", "task_id", "updated_at"])


@task()
def run_extraction_job(job_id: str, generation: int) -> str:
    outcome = runner.extraction_job_run(job_id=job_id, generation=generation)
    if outcome.deferred_until is not None:
        with transaction.atomic():
            job = lifecycle.extraction_job_defer(
                job_id=job_id,
                generation=generation,
                until=outcome.deferred_until,
                rate=outcome.rate,
            )
            if job is None:
                return "superseded"
            enqueue(job, run_after=outcome.deferred_until)
    return outcome.status
