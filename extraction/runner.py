"""One run of an extraction job: claim it, read pages until the provider has no more, store
each page as it arrives, finish. A deferral is returned to the task (extraction.tasks), which
enqueues the next run; everything else ends here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from extraction import extractors, lifecycle
from extraction.errors import Superseded, SyncDeferred, SyncFailed
from extraction.extractors import Page
from extraction.models import ExtractedItem, ExtractionJob
from extraction.session import ProviderSession

logger = logging.getLogger("extraction.runner")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # succeeded / failed / deferred / superseded
    deferred_until: datetime | None = None
    rate: tuple[int, datetime] | None = None


def extraction_job_run(*, job_id: str, generation: int) -> Outcome:
    job = lifecycle.extraction_job_start(job_id=job_id, generation=generation)
    if job is None:
        return Outcome("superseded")  # cancelled, or another task took over
    session: ProviderSession | None = None
    try:
        extractor = extractors.for_provider(job.provider)
        session = ProviderSession(job=job, generation=generation, extractor=extractor)
        _sync(job, generation, session)
    except Superseded:
        return Outcome("superseded")
    except SyncDeferred as e:
        latest = timezone.now() + timedelta(seconds=settings.EXTRACTION_MAX_DEFER_SECONDS)
        rate = session.rate if session else None
        logger.info("Extraction job %s deferred until %s", job_id, e.until.isoformat())
        return Outcome("deferred", min(e.until, latest), rate)
    except SyncFailed as e:
        logger.info("Extraction job %s failed: %s", job_id, e.message)
        return _failed(job, generation, e.message, expire_connection=e.expire_connection)
    except Exception:
        # A bug or a lost database: the job must not stay `running`. (If the database is gone,
        # this raises too, and the recovery sweep picks the job up later.)
        logger.exception("Extraction job %s failed unexpectedly", job_id)
        return _failed(job, generation, "The sync failed unexpectedly; try again later.")
    if lifecycle.extraction_job_finish(job_id=job_id, succeeded=True, generation=generation):
        logger.info("Extraction job %s succeeded", job_id)
        return Outcome("succeeded")
    return Outcome("superseded")


def _failed(
    job: ExtractionJob, generation: int, message: str, *, expire_connection: bool = False
) -> Outcome:
    finished = lifecycle.extraction_job_finish(
        job_id=job.pk,
        succeeded=False,
        error=message,
        generation=generation,
        expire_connection=expire_connection,
    )
    return Outcome("failed" if finished else "superseded")


def _sync(job: ExtractionJob, generation: int, session: ProviderSession) -> None:
    extractor = session.extractor
    base = session.provider.effective_api_base_url
    cursor: str | None = job.cursor or None
    extracted = job.items_extracted
    pages = 0
    while True:
        url = extractor.page_url(base, cursor)
        page = extractor.parse(session.get(url), base=base, url=url)
        pages += 1
        extracted += len(page.items)
        items = [
            ExtractedItem(
                connection_id=session.connection_id,
                external_id=item.external_id,
                kind=extractor.kind,
                data=item.data,
                last_job_id=job.pk,
            )
            for item in page.items
        ]
        stored = lifecycle.extraction_job_record_page(
            job_id=job.pk,
            generation=generation,
            items=items,
            cursor=page.next_cursor or "",
            progress=progress(page, extracted=extracted, pages=pages),
            rate=session.rate,
        )
        if not stored:
            raise Superseded()
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def progress(page: Page, *, extracted: int, pages: int) -> int:
    """Per cent done: from the provider's total or page count when it gives one; otherwise
    an estimate that rises with each page and never reaches 100 before the last."""
    if page.next_cursor is None:
        return 99
    if page.total:
        return int(100 * min(1.0, extracted / page.total))
    if page.fraction is not None:
        return int(100 * min(1.0, page.fraction))
    return min(95, 100 - 100 // (pages + 1))
