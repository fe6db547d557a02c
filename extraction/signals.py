"""Receivers that only call the cache layer; connected in ExtractionConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from connectors import cache
from extraction.models import ExtractionJob


def extraction_job_changed(
    sender: type[ExtractionJob], instance: ExtractionJob, using: str, **kwargs: Any
) -> None:
    cache.invalidate_extraction_job_on_commit(instance.pk, using=using)


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(
            extraction_job_changed,
            sender=ExtractionJob,
            dispatch_uid=f"extraction.extraction_job_changed.{signal is post_save}",
        )
