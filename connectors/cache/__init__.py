"""The cache layer's public face: everything outside connectors/cache imports only these names.

Layers, each importing only those below it (import-linter checks this in `make lint`):
listener, maintenance, contract > readthrough > invalidation > recovery > outbox >
eviction, stats > store > entry, topology > keys, breaker, threads, serializer, scripts,
clients, election.
The request -> selector -> cache -> database flow and the design: docs/architecture.md.
"""

from __future__ import annotations

from connectors.cache import outbox, recovery, store
from connectors.cache.breaker import State
from connectors.cache.contract import (
    acquire_platform_status_lease,
    delete_value,
    get_cached_platform_status,
    get_value,
    set_cached_platform_status,
    set_value,
)
from connectors.cache.entry import SCHEMA_VERSION, CachedRead, Counter, Prefetched, etag_of
from connectors.cache.entry import decode as decode_entry
from connectors.cache.eviction import evict_users
from connectors.cache.invalidation import (
    invalidate_extraction_job_on_commit,
    invalidate_platform_status_cache,
    invalidate_platform_status_on_commit,
)
from connectors.cache.keys import (
    TTL_SECONDS,
    Slot,
    extraction_job_key,
    platform_rate_limit_key,
    platform_status_key,
    soul_signature_key,
    status_slot,
    ttl_seconds,
    user_profile_key,
)
from connectors.cache.listener import (
    InvalidationListener,
    ListenerStats,
    ListenerUnsupported,
    conninfo_from_settings,
)
from connectors.cache.maintenance import (
    cache_stats,
    clear_all,
    clear_user,
    health,
    invalidate_all_platform_status,
)
from connectors.cache.readthrough import (
    Loader,
    counted_read_platform_status,
    prefetched_hit,
    read_extraction_job,
    read_platform_status,
)
from connectors.cache.recovery import on_recovery
from connectors.cache.stats import counters
from connectors.cache.store import (
    backend_name,
    breaker,
    breaker_closed,
    breaker_state,
    enabled,
    full_key,
    maintenance_client,
    redis_client,
    reset_breakers,
    set_undelivered,
    undelivered,
)

# The breaker's probe replays the outbox before reads resume; store cannot import recovery
# (a higher layer), so the package wires the two together here, once, for every importer.
store.on_probe(recovery.probe)

sweeper = outbox.sweeper
sweep_once = outbox.sweep_once

__all__ = [
    "SCHEMA_VERSION",
    "TTL_SECONDS",
    "CachedRead",
    "Counter",
    "InvalidationListener",
    "ListenerStats",
    "ListenerUnsupported",
    "Loader",
    "Prefetched",
    "Slot",
    "State",
    "acquire_platform_status_lease",
    "backend_name",
    "breaker",
    "breaker_closed",
    "breaker_state",
    "cache_stats",
    "clear_all",
    "clear_user",
    "conninfo_from_settings",
    "counted_read_platform_status",
    "counters",
    "decode_entry",
    "delete_value",
    "enabled",
    "etag_of",
    "evict_users",
    "extraction_job_key",
    "full_key",
    "get_cached_platform_status",
    "get_value",
    "health",
    "invalidate_all_platform_status",
    "invalidate_extraction_job_on_commit",
    "invalidate_platform_status_cache",
    "invalidate_platform_status_on_commit",
    "maintenance_client",
    "on_recovery",
    "platform_rate_limit_key",
    "platform_status_key",
    "prefetched_hit",
    "read_extraction_job",
    "read_platform_status",
    "redis_client",
    "reset_breakers",
    "set_cached_platform_status",
    "set_undelivered",
    "set_value",
    "soul_signature_key",
    "status_slot",
    "sweep_once",
    "sweeper",
    "ttl_seconds",
    "undelivered",
    "user_profile_key",
]
