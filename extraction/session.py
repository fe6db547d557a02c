"""One job's conversation with its provider: the access token (refreshed once when the
provider says it expired), the rate-limit budget (checked before every request, updated from
every answer), and a heartbeat before every attempt, so a live worker is never taken for a dead
one."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from connectors import outbound
from connectors.providers import Provider, get_provider
from extraction import http, lifecycle, tokens
from extraction.budget import Budget, budget_load, budget_save, budget_shared
from extraction.errors import Superseded, SyncDeferred, SyncFailed
from extraction.extractors import Extractor
from extraction.models import ExtractionJob


class ProviderSession:
    def __init__(self, *, job: ExtractionJob, generation: int, extractor: Extractor) -> None:
        self.job = job
        self.generation = generation
        self.extractor = extractor
        self.provider: Provider = get_provider(job.provider)
        self.credentials = tokens.credentials_load(user_id=str(job.user_id), provider=self.provider)
        self.budget: Budget | None = budget_load(job=job)
        self.refreshed = False

    @property
    def connection_id(self) -> int:
        return self.credentials.connection_id

    @property
    def rate(self) -> tuple[int, datetime] | None:
        return (self.budget.remaining, self.budget.reset_at) if self.budget else None

    def get(self, url: str) -> outbound.Response:
        """A 2xx answer for `url`, or SyncDeferred / SyncFailed / Superseded."""
        if self.credentials.expiring(timezone.now()) and self.credentials.refresh_token:
            self._refresh()
        while True:
            self._defer_if_spent()
            response = http.call(
                "GET",
                url,
                name=self.provider.display_name,
                headers=self.extractor.headers(self.credentials.access_token),
                before_attempt=self._heartbeat,
            )
            now = timezone.now()
            quota = self.extractor.quota(response, now)
            if quota is not None:
                self._remember(Budget.from_quota(quota), now)
            if response.status == 401:
                if self.refreshed:
                    raise SyncFailed(
                        tokens.reconnect_message(self.provider), expire_connection=True
                    )
                self._refresh()
                continue
            wait = self.extractor.throttled_for(response, now)
            if wait is not None:
                until = now + timedelta(seconds=min(wait, settings.EXTRACTION_MAX_DEFER_SECONDS))
                self._remember(Budget(0, until), now)
                raise SyncDeferred(until)
            if 200 <= response.status < 300:
                return response
            if 300 <= response.status < 400:
                raise SyncFailed(
                    f"{self.provider.display_name} answered with a redirect "
                    f"(HTTP {response.status}), which is not followed."
                )
            raise SyncFailed(
                f"{self.provider.display_name} refused the request (HTTP {response.status})."
            )

    def _refresh(self) -> None:
        self.refreshed = True
        self.credentials = tokens.credentials_refresh(
            provider=self.provider, current=self.credentials
        )

    def _defer_if_spent(self) -> None:
        # The budget another worker stored may be newer than ours (same user and provider).
        shared = budget_shared(job=self.job)
        if shared is not None:
            self.budget = shared
        if self.budget is not None and self.budget.spent(timezone.now()):
            raise SyncDeferred(self.budget.reset_at)

    def _remember(self, budget: Budget, now: datetime) -> None:
        self.budget = budget
        budget_save(job=self.job, budget=budget, now=now)

    def _heartbeat(self) -> None:
        if not lifecycle.extraction_job_heartbeat(job_id=self.job.pk, generation=self.generation):
            raise Superseded()
