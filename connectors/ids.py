"""The one parser of user and job ids: the canonical 8-4-4-4-12 UUID form, nothing else.

Every layer (keys, authentication, the API, services) goes through it, so no other spelling of an
id can ever reach a cache key or a query.
"""

from __future__ import annotations

import re
import uuid

from connectors.errors import DomainError, InvalidJobId, InvalidUserId

UUID_EXAMPLE = "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a"
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: object) -> str | None:
    """The lower-case canonical form, or None. uuid.UUID() alone is too lenient: it accepts
    braces, "urn:uuid:", missing dashes, surrounding spaces and non-ASCII digits, and maps some
    of them to a *different* valid id."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        return None
    if _CANONICAL.fullmatch(value):
        return value  # the common case, checked on every request
    lowered = value.lower()
    if value.isascii() and _CANONICAL.fullmatch(lowered):
        return lowered
    return None


def _parse(value: object, error: type[DomainError], name: str, *, text_only: bool) -> str:
    canonical = None if text_only and not isinstance(value, str) else canonical_uuid(value)
    if canonical is None:
        raise error(f"{name} must be a UUID such as {UUID_EXAMPLE}.")
    return canonical


def normalize_user_id(user_id: object) -> str:
    """The canonical form of a user id (a UUID object or its text), or InvalidUserId."""
    return _parse(user_id, InvalidUserId, "user_id", text_only=False)


def normalize_job_id(job_id: object) -> str:
    return _parse(job_id, InvalidJobId, "job_id", text_only=False)


def strict_user_id(value: object) -> str:
    """A user id as a client sent it (URL, body): text only, else InvalidUserId (400)."""
    return _parse(value, InvalidUserId, "user_id", text_only=True)


def strict_job_id(value: object) -> str:
    return _parse(value, InvalidJobId, "job_id", text_only=True)
