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
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import SSLConnection
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import SentinelManagedConnection
from redis.utils import SENTINEL


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
            # Every node another client of this process knows of, not only the URL's: that one
            # may be the very node that is down (a probe's or a PING's client, made then).
            known = next((c for c in _clusters.values() if c.connectors_url == url), None)  # type: ignore[attr-defined]
            startup = [ClusterNode(n.host, n.port) for n in known.get_nodes()] if known else []
            client = _clusters[key] = RedisCluster(
                url=url,
                startup_nodes=startup,
                socket_timeout=options.get("SOCKET_TIMEOUT"),
                socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT"),
                # No retry loop on the request path: the breaker and the database fallback
                # decide what a failure costs. MOVED / ASK are still followed.
                retry=Retry(NoBackoff(), 0),
                # Serve the slots that are up while one shard fails over.
                require_full_coverage=False,
                **kwargs,
            )
            client.connectors_url = url  # type: ignore[attr-defined]
    return client


class ClusterClient(DefaultClient):
    """django-redis' client over RedisCluster: single-key commands and scripts work as they
    are (every key of a user shares one slot through its `{user_id}` hash tag)."""

    def connect(self, index: int = 0) -> Any:
        return cluster_for(self._server[index], self._options)


class SentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection reads with disconnect_on_error=False (its base class
    says True): a reply that timed out then arrives on a connection back in the pool, and is
    read as the answer to the next command sent on it (a WAIT, a GET of another key)."""

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: float | object = SENTINEL,
        disconnect_on_error: bool | None = True,
        push_request: bool | None = False,
    ) -> Any:
        return super().read_response(
            disable_decoding=disable_decoding,
            timeout=timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )


class SentinelSSLConnection(SentinelConnection, SSLConnection):
    pass


class SentinelFactory(SentinelConnectionFactory):
    """django-redis' Sentinel factory with connections that drop a timed-out reply, and a
    majority rule: a sentinel that sees no peer may be on the losing side of a partition, and
    its stale answer would point writes at a node about to be demoted."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._sentinel.min_other_sentinels = len(options["SENTINELS"]) // 2

    def get_connection_pool(self, params: dict[str, Any]) -> Any:
        tls = str(params.get("url", "")).startswith("rediss:")
        self.pool_cls_kwargs: dict[str, Any] = {
            **self.pool_cls_kwargs,
            "connection_class": SentinelSSLConnection if tls else SentinelConnection,
        }
        return super().get_connection_pool(params)
