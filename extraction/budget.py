"""The seed's rate-limit budget: a provider's remaining quota for one user, stored under
`platform_rate_limit:{user_id}:<provider>` until the provider's reset time (at most the
contract's 3600 s). Without Redis the budget lives only in the job row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors import cache
from extraction.extractors.base import Quota, epoch
from extraction.models import ExtractionJob


@dataclass(frozen=True, slots=True)
class Budget:
    remaining: int
    reset_at: datetime

    def spent(self, now: datetime) -> bool:
        return self.remaining <= 0 and self.reset_at > now

    @classmethod
    def from_quota(cls, quota: Quota) -> Budget:
        return cls(quota.remaining, quota.reset_at)


def _decode(value: Any) -> Budget | None:
    if not isinstance(value, dict):
        return None
    remaining, reset = value.get("remaining"), value.get("reset_at")
    if not isinstance(remaining, int) or not isinstance(reset, int | float):
        return None
    return Budget(remaining, epoch(reset))


def budget_shared(*, job: ExtractionJob) -> Budget | None:
    """The budget in Redis, shared by every worker (None without Redis or when unknown)."""
    return _decode(cache.get_value(cache.platform_rate_limit_key(job.user_id, job.provider)))


def budget_load(*, job: ExtractionJob) -> Budget | None:
    """The freshest budget known: Redis, else the job's own."""
    stored = budget_shared(job=job)
    if stored is not None:
        return stored
    if job.rate_remaining is not None and job.rate_reset_at is not None:
        return Budget(job.rate_remaining, job.rate_reset_at)
    return None


def budget_save(*, job: ExtractionJob, budget: Budget, now: datetime) -> None:
    left = (budget.reset_at - now).total_seconds()
    if left <= 0:
        return  # already reset: nothing worth remembering
    ttl = min(cache.ttl_seconds("platform_rate_limit"), max(1.0, left))
    value = {"remaining": budget.remaining, "reset_at": budget.reset_at.timestamp()}
    cache.set_value(cache.platform_rate_limit_key(job.user_id, job.provider), value, ttl)
