"""Logging pieces named in settings.LOGGING: the request id on every record, JSON lines.

The request id lives in a context variable set by connectors.middleware.RequestIdMiddleware, so
a line logged anywhere while a request is served (the cache layer's HIT / MISS lines included)
carries the id the client sent in X-Request-ID or the one generated for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class DropErrorResponses(logging.Filter):
    """For runserver's access log (django.server): error responses already have their line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return int(getattr(record, "status_code", 0) or 0) < 400


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id (and exc_info)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault(
            "rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"}
        )
        kwargs.setdefault("datefmt", "%Y-%m-%dT%H:%M:%S%z")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def quiet(name: str, *, level: int = logging.WARNING) -> Iterator[None]:
    """Raise logger `name` to `level` for the duration: bulk commands (seed_demo, warm_cache)
    print one summary instead of the cache layer's line per user."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)
