"""Reads of extraction jobs: one job cached 60 s through connectors.cache; lists from the
database (they change with every page of every job)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from connectors import cache
from connectors.errors import JobNotFound
from connectors.ids import normalize_job_id
from connectors.selectors import iso_utc
from extraction.models import ExtractionJob


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def extraction_job_from_db(*, job_id: str) -> dict[str, Any]:
    row = ExtractionJob.objects.filter(pk=job_id).values(*ExtractionJob.PUBLIC_FIELDS).first()
    if row is None:
        raise JobNotFound("No such extraction job.")
    return {field: _json_value(value) for field, value in row.items()}


def extraction_job_for_user(*, job_id: object, user_id: str | None) -> cache.CachedRead:
    """The job, if it belongs to `user_id` (None: any user, for the service role).

    Someone else's job is reported exactly like a missing one.
    """
    jid = normalize_job_id(job_id)
    result = cache.read_extraction_job(jid, lambda: extraction_job_from_db(job_id=jid))
    if user_id is not None and result.data.get("user_id") != user_id:
        raise JobNotFound("No such extraction job.")
    return result


def extraction_jobs_list(
    *, user_id: str | None, provider: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; `user_id` None lists every user's jobs (the service role only)."""
    jobs = ExtractionJob.objects.order_by("-created_at")
    if user_id is not None:
        jobs = jobs.filter(user_id=user_id)
    if provider is not None:
        jobs = jobs.filter(provider=provider)
    if status is not None:
        jobs = jobs.filter(status=status)
    rows = jobs.values(*ExtractionJob.PUBLIC_FIELDS)[:limit]
    return [{field: _json_value(value) for field, value in row.items()} for row in rows]
