"""A real `manage.py run_worker` process against the test database, and waiting for jobs.

Tests that use it commit their rows (`django_db(transaction=True)`), so the worker sees them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from connectors.auth import issue_token
from extraction.models import ExtractionJob, JobStatus

ROOT = Path(__file__).resolve().parents[2]
# Fast enough for tests, and EXTRACTION_STALE_SECONDS still above deadline + backoff cap.
FAST_SETTINGS = {
    "EXTRACTION_HTTP_DEADLINE": "2",
    "EXTRACTION_HTTP_RETRIES": "2",
    "EXTRACTION_RETRY_BACKOFF_SECONDS": "0.02",
    "EXTRACTION_RETRY_BACKOFF_MAX_SECONDS": "0.1",
    "EXTRACTION_STALE_SECONDS": "3",
    "EXTRACTION_RECOVER_INTERVAL_SECONDS": "0.25",
    "OAUTH_HTTP_TIMEOUT": "2",
}


def the_tests_database_url() -> str:
    """DATABASE_URL, pointed at the database pytest-django created for this run."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


class WorkerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **FAST_SETTINGS, **env, "DATABASE_URL": the_tests_database_url()}
        self.log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        command = [sys.executable, "manage.py", "run_worker", "--interval", "0.05"]
        command += ["--no-startup-delay", "--no-reload", "-v", "1"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a host dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        Path(self.log.name).unlink(missing_ok=True)


def wait_for[T](predicate: Callable[[], T | None], *, timeout: float = 30, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


def _settled(job_id: Any, statuses: set[str]) -> ExtractionJob | None:
    job = ExtractionJob.objects.get(pk=job_id)
    if job.status not in statuses:
        return None
    if job.status == JobStatus.CANCELLED:
        return job  # its unclaimed task row was deleted with the cancel
    # The task row is marked finished only after the task function returned, that is after
    # the job's last transaction committed and its on-commit invalidations ran.
    if job.task_id is None:
        return None
    task = DBTaskResult.objects.filter(pk=job.task_id).values_list("status", flat=True).first()
    if job.status in JobStatus.finished() and task not in (
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.FAILED,
    ):
        return None
    return job


def wait_for_job(job_id: Any, *statuses: str, timeout: float = 30) -> ExtractionJob:
    wanted = set(statuses) or set(JobStatus.finished())
    return wait_for(lambda: _settled(job_id, wanted), timeout=timeout, what=f"job in {wanted}")


def wait_for_deferral(job_id: Any, *, timeout: float = 30) -> ExtractionJob:
    """The job is back in the queue with a run_after (and its next task committed)."""

    def deferred() -> ExtractionJob | None:
        job = ExtractionJob.objects.get(pk=job_id)
        return job if job.status == JobStatus.QUEUED and job.run_after is not None else None

    return wait_for(deferred, timeout=timeout, what="a deferred job")


def connect(make_connection: Callable[..., Any], user_id: str, account: Any, **fields: Any) -> Any:
    """A connection holding `account`'s tokens (an Account of tests.support.providers)."""
    return make_connection(
        user_id,
        account.provider,
        access_token=account.access_token,
        refresh_token=account.refresh_token,
        **fields,
    )


def start_sync(user_id: str, provider: str) -> str:
    """POST /api/extraction/jobs as `user_id`; the new job's id."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user_id=user_id)}")
    response = client.post("/api/extraction/jobs", {"provider": provider}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["data"]["id"])
