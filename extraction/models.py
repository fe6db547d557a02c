from __future__ import annotations

import uuid

from django.db import models

from connectors.providers import PROVIDER_CHOICES


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def finished(cls) -> set[str]:
        return {cls.SUCCEEDED, cls.FAILED}


class ExtractionJob(models.Model):
    # What the API shows of a job (and caches): extraction.selectors builds the document from
    # these columns only.
    PUBLIC_FIELDS = (
        "id",
        "user_id",
        "provider",
        "status",
        "progress",
        "items_extracted",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField(db_index=True)
    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Per cent, 0-100.")
    items_extracted = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="job_status_created_idx")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.provider} extraction {self.id} ({self.status})"
