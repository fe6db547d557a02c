from __future__ import annotations

import uuid

from django.db import models

from connectors.models import PlatformConnection
from connectors.providers import PROVIDER_CHOICES


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def active(cls) -> set[str]:
        return {cls.QUEUED, cls.RUNNING}

    @classmethod
    def finished(cls) -> set[str]:
        return {cls.SUCCEEDED, cls.FAILED, cls.CANCELLED}


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
        "run_after",
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
    # Deferred (spent rate-limit budget, a 429): not run before this time.
    run_after = models.DateTimeField(null=True, blank=True)
    # Bumped each time a task is enqueued for the job. A task carries the generation it was
    # enqueued with and may act on the job only while it is still current (a fencing token), so
    # a worker presumed dead that wakes up again cannot write over its successor.
    generation = models.PositiveIntegerField(default=0)
    task_id = models.UUIDField(null=True, blank=True, help_text="The current django-tasks row.")
    recoveries = models.PositiveSmallIntegerField(default=0)
    # Written before every provider request by the worker running the job; a running job
    # silent for EXTRACTION_STALE_SECONDS is presumed orphaned (extraction.recovery).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Where the next page starts (a next-page URL, a page token, an `after` id): a deferred or
    # recovered job resumes there instead of starting over.
    cursor = models.TextField(blank=True, default="")
    # The provider's remaining quota as last reported: the rate-limit budget when there is no
    # Redis (with Redis it is also under platform_rate_limit:{user_id}:<provider>).
    rate_remaining = models.IntegerField(null=True, blank=True)
    rate_reset_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="job_status_created_idx")]
        constraints = [
            # One active job per user and provider, whatever races the API (a second POST
            # gets 409 with this job's id).
            models.UniqueConstraint(
                fields=["user_id", "provider"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_provider",
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.provider} extraction {self.id} ({self.status})"


class ExtractedItem(models.Model):
    """One record read from a provider (a repository, a play, an event...): a re-sync updates
    it in place (unique per connection and external id)."""

    connection = models.ForeignKey(PlatformConnection, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    last_job_id = models.UUIDField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="uniq_item_per_connection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id}"
