"""Reads of extraction jobs, cached 60 s through connectors/cache.py."""

from __future__ import annotations

from typing import Any

from connectors import cache
from connectors.errors import JobNotFound
from extraction.api.serializers import ExtractionJobSerializer
from extraction.models import ExtractionJob


def extraction_job_from_db(*, job_id: str) -> dict[str, Any]:
    job = ExtractionJob.objects.filter(pk=job_id).first()
    if job is None:
        raise JobNotFound("No such extraction job.")
    return dict(ExtractionJobSerializer(job).data)


def extraction_job_for_user(*, job_id: object, user_id: str | None) -> cache.CachedRead:
    """The job, if it belongs to `user_id` (None: any user, for the service role).

    Someone else's job is reported exactly like a missing one.
    """
    jid = cache.normalize_job_id(job_id)
    result = cache.read_extraction_job(jid, lambda: extraction_job_from_db(job_id=jid))
    if user_id is not None and result.data.get("user_id") != user_id:
        raise JobNotFound("No such extraction job.")
    return result
