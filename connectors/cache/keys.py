"""Key formats and TTLs: the seed's contract names, each key carrying its `{id}` hash tag.

The hash tag keeps every key of one user (entry, lease, rate limits) in one Redis Cluster slot,
so multi-key DELs and the Lua scripts stay valid there.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from connectors.ids import normalize_job_id, normalize_user_id
from connectors.providers import PROVIDERS, get_provider

# The contract's TTLs (seed document), in seconds.
TTL_SECONDS: dict[str, int] = {
    "platform_status": 300,
    "user_profile": 600,
    "soul_signature": 900,
    "extraction_job": 60,
    "platform_rate_limit": 3600,
}
STATS_KEY = "cache_stats"
# Present while Redis holds this deployment's data; gone after a restart that lost it.
POPULATED_KEY = "cache_populated"


def ttl_seconds(name: str) -> float:
    return TTL_SECONDS[name] * settings.CACHE_TTL_SCALE


@dataclass(frozen=True, slots=True)
class Slot:
    """One read-through object: `kind` names the contract key and TTL; `ident` is a canonical
    UUID (a user's for platform_status, a job's for extraction_job)."""

    kind: str
    ident: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{{{self.ident}}}"

    @property
    def lease_key(self) -> str:
        return f"{self.key}:lease"

    @property
    def label(self) -> str:
        return "job" if self.kind == "extraction_job" else "user"

    def describe(self) -> str:
        return f"{self.kind} for {self.label} {self.ident}"


def status_slot(user_id: object) -> Slot:
    return Slot("platform_status", normalize_user_id(user_id))


def job_slot(job_id: object) -> Slot:
    return Slot("extraction_job", normalize_job_id(job_id))


def platform_status_key(user_id: object) -> str:
    return status_slot(user_id).key


def extraction_job_key(job_id: object) -> str:
    return job_slot(job_id).key


def user_profile_key(user_id: object) -> str:
    return f"user_profile:{{{normalize_user_id(user_id)}}}"


def soul_signature_key(user_id: object) -> str:
    return f"soul_signature:{{{normalize_user_id(user_id)}}}"


def platform_rate_limit_key(user_id: object, provider: str) -> str:
    return f"platform_rate_limit:{{{normalize_user_id(user_id)}}}:{get_provider(provider).name}"


def user_keys(user_id: object) -> list[str]:
    """Every key this service may hold for one user."""
    status = status_slot(user_id)
    return [
        status.key,
        status.lease_key,
        user_profile_key(status.ident),
        soul_signature_key(status.ident),
        *(platform_rate_limit_key(status.ident, name) for name in PROVIDERS),
    ]


def glob_escape(literal: str) -> str:
    """`literal` as a SCAN MATCH pattern that matches only itself: a deployment prefix such as
    `a?b` or `a[1]` must not match other deployments' keys."""
    return "".join(f"\\{c}" if c in "\\*?[]" else c for c in literal)
