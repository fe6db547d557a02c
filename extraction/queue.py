"""The task rows behind jobs (django-tasks-db's DBTaskResult): is a job's task still waiting,
and cleaning up after a worker that died or a job that was cancelled."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

WORKER_LOST = "extraction.recovery.WorkerLost"


def task_orphaned(task_id: uuid.UUID | None, *, claimed_before: datetime) -> bool:
    """Nobody will run this task: it is missing, finished, or was claimed before
    `claimed_before` by a worker that has not reported since. A task still waiting in the
    queue (a backlog, a deferral) is not orphaned."""
    if task_id is None:
        return True
    row = DBTaskResult.objects.filter(pk=task_id).values("status", "started_at").first()
    if row is None:
        return True
    if row["status"] == TaskResultStatus.READY:
        return False
    if row["status"] == TaskResultStatus.RUNNING:
        return row["started_at"] is None or row["started_at"] < claimed_before
    return True


def task_abandon(task_id: uuid.UUID | None) -> None:
    """The worker that claimed this task died: record it as failed, so it does not show as
    running forever in the admin (django-tasks-db itself never revisits it)."""
    if task_id is None:
        return
    DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        exception_class_path=WORKER_LOST,
        traceback="The worker running this task stopped reporting; the job was recovered.",
    )


def task_discard(task_id: uuid.UUID | None) -> None:
    """Drop a task nobody has claimed yet (its job was cancelled)."""
    if task_id is not None:
        DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.READY).delete()
