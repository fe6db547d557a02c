"""django-redis clients for the shapes it lacks, and how a Redis error counts.

ClusterClient: django-redis' client API over redis-py's RedisCluster (django-redis 7 has no
cluster client: django-redis #208, #710). SentinelFactory: django-redis' Sentinel factory with a
majority rule (a sentinel that sees no peer cannot name the master). failure_kind() separates
"Redis is down" from "Redis is slow" from "Redis answered with an error"; only the first counts
towards a breaker at once (docs/architecture.md, "Outages").
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import redis
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from django_redis.pool import SentinelConnectionFactory
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry


class NotReplicated(redis.RedisError):
    """A DEL reached a node, but neither enough replicas nor the topology confirmed it."""


# RedisClusterException (slot not covered, pipeline refusals) is not a RedisError.
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError, ConnectionInterrupted)
Failure = Literal["down", "slow", "reply"]


def failure_kind(error: BaseException) -> Failure:
    """ "slow": a timeout (confirmed by a probe before it counts); "reply": the server answered
    (WRONGTYPE, a script error): it is up; "down": it could not be reached or cannot serve."""
    cause = error.__cause__ if isinstance(error, ConnectionInterrupted) else error
    if isinstance(cause, redis.TimeoutError | TimeoutError):
        return "slow"
    if isinstance(cause, ClusterDownError | TryAgainError | ReadOnlyError):
        return "down"  # this node cannot serve the slot (failing over, demoted)
    if isinstance(cause, ResponseError | NotReplicated | redis.DataError):
        return "reply"
    return "down"


_clusters: dict[str, RedisCluster] = {}
_clusters_lock = threading.Lock()


def cluster_for(url: str, options: dict[str, Any]) -> RedisCluster:
    """One RedisCluster per URL and options for the process: it holds the slot map and a pool
    per node, which every thread shares."""
    key = repr((url, sorted((k, repr(v)) for k, v in options.items())))
    with _clusters_lock:
        client = _clusters.get(key)
        if client is None:
            kwargs = {k: v for k, v in options.get("CONNECTION_POOL_KWARGS", {}).items()}
            kwargs.pop("retry", None)
            client = _clusters[key] = RedisCluster.from_url(
                url,
                socket_timeout=options.get("SOCKET_TIMEOUT"),
                socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT"),
                # No retry loop on the request path: the breaker and the database fallback
                # decide what a failure costs. MOVED / ASK are still followed.
                retry=Retry(NoBackoff(), 0),
                # Serve the slots that are up while one shard fails over.
                require_full_coverage=False,
                **kwargs,
            )
    return client


class ClusterClient(DefaultClient):
    """django-redis' client over RedisCluster: single-key commands and scripts work as they
    are (every key of a user shares one slot through its `{user_id}` hash tag)."""

    def connect(self, index: int = 0) -> Any:
        return cluster_for(self._server[index], self._options)


class SentinelFactory(SentinelConnectionFactory):
    """Only a sentinel that sees a majority of its peers may name the master: in a partition,
    the minority's stale answer would point writes at a node that is about to be demoted."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._sentinel.min_other_sentinels = len(options["SENTINELS"]) // 2
