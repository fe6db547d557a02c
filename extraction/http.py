"""Provider requests through connectors.outbound (one deadline, bounded body, no redirects),
with retries and jittered exponential backoff for 5xx answers and network errors."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

from django.conf import settings

from connectors import outbound
from extraction.errors import SyncFailed


def backoff_seconds(attempt: int) -> float:
    base = settings.EXTRACTION_RETRY_BACKOFF_SECONDS * (2**attempt)
    return min(settings.EXTRACTION_RETRY_BACKOFF_MAX_SECONDS, base * random.uniform(0.5, 1.5))


def call(
    method: str,
    url: str,
    *,
    name: str,
    headers: Mapping[str, str],
    form: Mapping[str, str] | None = None,
    before_attempt: Callable[[], None] | None = None,
    max_body_bytes: int | None = None,
    deadline: float | None = None,
) -> outbound.Response:
    """The first answer below 500. Raises SyncFailed (message names `name`, never the
    provider's text) when every attempt failed, the body is too big, or the URL is refused."""
    limit = max_body_bytes or settings.EXTRACTION_MAX_RESPONSE_BYTES
    attempts = settings.EXTRACTION_HTTP_RETRIES + 1
    problem = ""
    for attempt in range(attempts):
        if before_attempt is not None:
            before_attempt()
        try:
            response = outbound.request(
                method,
                url,
                deadline=deadline or settings.EXTRACTION_HTTP_DEADLINE,
                max_body_bytes=limit,
                headers=headers,
                form=form,
            )
        except outbound.ResponseTooLarge as e:
            raise SyncFailed(f"{name} sent a response larger than {limit:,} bytes.") from e
        except outbound.InsecureURL as e:
            raise SyncFailed(f"{name}'s API address is refused: https is required.") from e
        except outbound.OutboundTimeout:
            problem = f"{name} did not answer in time"
        except outbound.OutboundError:
            problem = f"{name} could not be reached"
        else:
            if response.status < 500:
                return response
            problem = f"{name} answered HTTP {response.status}"
        if attempt + 1 < attempts:
            time.sleep(backoff_seconds(attempt))
    raise SyncFailed(f"{problem} ({attempts} attempts); try again later.")
