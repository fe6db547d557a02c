"""What differs between one Redis, Sentinel and Cluster, behind one set of functions.

Shards: a Cluster's slot ranges (named by their first slot, which a failover keeps), or ALL.
Invalidations are DELs of one slot's keys each, sent to the shard's master with WAIT and
counted as delivered only once replicas or the topology confirm them; bulk work runs per master
node and per slot. Why: docs/architecture.md ("Failover").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.connection import Connection, SSLConnection
from redis.crc import key_slot

from connectors.cache.clients import REDIS_ERRORS, NotReplicated

logger = logging.getLogger("connectors.cache")

ALL = -1  # the one shard of a Redis that is not a Cluster
Group = Sequence[str]  # keys of one hash slot, deleted by one DEL
Address = tuple[Any, Any]


def is_cluster(r: Any) -> bool:
    return isinstance(r, RedisCluster)


def _shards(rc: RedisCluster) -> tuple[list[int], dict[str, int]]:
    """(shard per slot, shard per master node name), rebuilt when the slot map is replaced."""
    manager: Any = rc.nodes_manager
    slots = manager.slots_cache
    cached = getattr(manager, "_connectors_shards", None)
    if cached is None or cached[0] is not slots:
        first: dict[str, int] = {}
        for slot in sorted(slots):
            first.setdefault(slots[slot][0].name, slot)
        table = [ALL] * 16384
        for slot, nodes in slots.items():
            table[slot] = first[nodes[0].name]
        cached = manager._connectors_shards = (slots, table, first)
    return cached[1], cached[2]


def shard_of(r: Any, key: str) -> int:
    """The shard serving `key`: ALL, or the first slot of its master's slot range."""
    if not isinstance(r, RedisCluster):
        return ALL
    return _shards(r)[0][key_slot(key.encode())]


def same_slot(keys: Sequence[str]) -> bool:
    """Whether a Cluster would take `keys` in one command (one hash slot)."""
    return len({key_slot(key.encode()) for key in keys}) <= 1


def _send(
    pool: Any, groups: Sequence[Group], replicas: int, timeout_ms: int
) -> tuple[int, Address]:
    """DEL every group, then WAIT, pipelined on one connection: (replicas that acknowledged,
    the address that connection talks to)."""
    conn = pool.get_connection()
    try:
        commands: list[tuple[Any, ...]] = [("DEL", *group) for group in groups]
        commands.append(("WAIT", replicas, timeout_ms))
        conn.send_packed_command(conn.pack_commands(commands))
        replies = [conn.read_response() for _ in groups]
        # WAIT holds its reply back up to its own timeout when a replica lags: that is on top
        # of the time the socket timeout allows the server (read with the socket timeout alone,
        # a busy machine's few ms more failed the invalidation and tripped the breaker).
        wait_timeout = (conn.socket_timeout or 0) + timeout_ms / 1000
        replies.append(conn.read_response(timeout=wait_timeout))
    except BaseException:
        conn.disconnect()  # replies may be left unread: the connection cannot be reused
        raise
    finally:
        pool.release(conn)
    return int(replies[-1]), (getattr(conn, "host", None), getattr(conn, "port", None))


def _sentinel_master(r: redis.Redis) -> Address | None:
    pool: Any = r.connection_pool
    manager = getattr(pool, "sentinel_manager", None)
    if manager is None:
        return None
    return tuple(manager.discover_master(pool.service_name))


_role_clients: dict[tuple[Any, ...], redis.Redis] = {}


def _role_client(pool: Any, address: Address) -> redis.Redis:
    """A client of one node of a Sentinel set, with the pool's credentials, TLS and timeouts."""
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(host=address[0], port=int(address[1]))
    tls = issubclass(pool.connection_class, SSLConnection)
    key = (tls, repr(sorted(kwargs.items())))
    client = _role_clients.get(key)
    if client is None:
        node_pool = redis.ConnectionPool(
            connection_class=SSLConnection if tls else Connection, **kwargs
        )
        client = _role_clients[key] = redis.Redis(connection_pool=node_pool)
    return client


def _other_masters(r: redis.Redis, address: Address) -> list[Address]:
    """The nodes the sentinels list as replicas that call themselves masters: promoted, with
    the sentinels not switched yet (they name the old master for up to a second or two after
    the promotion), or an old master not yet demoted."""
    pool: Any = r.connection_pool
    found = []
    for replica in pool.sentinel_manager.discover_slaves(pool.service_name):
        if tuple(replica) == tuple(address):
            continue
        client = _role_client(pool, replica)
        try:
            role = client.execute_command("ROLE")[0]
        except REDIS_ERRORS:
            continue  # down: it serves no reads either, and cannot be promoted without Sentinel
        if role in (b"master", "master"):
            found.append(tuple(replica))
    return found


def _delete_on(r: redis.Redis, address: Address, groups: Sequence[Group]) -> None:
    pipe = _role_client(r.connection_pool, address).pipeline(transaction=False)
    for group in groups:
        pipe.delete(*group)
    pipe.execute()


def delete(
    r: Any, groups: Sequence[Group], *, replicas: int, timeout_ms: int
) -> dict[int, BaseException]:
    """DEL each group; the groups not known to be delivered, by index, with why.

    Without replicas to wait for, a plain pipeline. Otherwise a DEL counts once `replicas`
    replicas acknowledged it, or once the topology, asked after the DEL, confirms that the node
    which took it is still the master (its replicas lag; a failover would replay: outbox).
    """
    if isinstance(r, RedisCluster):
        return _delete_cluster(r, groups, replicas, timeout_ms)
    if not replicas:
        pipe = r.pipeline(transaction=False)
        for group in groups:
            pipe.delete(*group)
        pipe.execute()
        return {}
    acked, address = _send(r.connection_pool, groups, replicas, timeout_ms)
    if acked >= replicas:
        return {}
    master = _sentinel_master(r)
    if master is not None and master != address:
        # The node that took the DEL is no longer the master (it still accepts writes until
        # Sentinel demotes it): re-point the pool and send the DEL to the one that is.
        logger.warning(
            "Redis master moved from %s to %s: re-sending invalidations", address, master
        )
        r.connection_pool.get_master_address()
        acked, address = _send(r.connection_pool, groups, replicas, timeout_ms)
        if acked < replicas:
            master = _sentinel_master(r)
    if acked >= replicas:
        return {}
    if master is not None and master == address:
        # Confirmed by the sentinels; but a replica promoted a moment ago takes reads as soon
        # as they switch, without this DEL: it gets the DEL too.
        for other in _other_masters(r, address):
            logger.info("%s calls itself master too: sending it the invalidations", other)
            _delete_on(r, other, groups)
        return {}
    error = NotReplicated(f"{acked} of {replicas} replica(s) acknowledged the DEL on {address}")
    return dict.fromkeys(range(len(groups)), error)


def refresh(r: Any) -> None:
    """Re-read a Cluster's slot map (nothing to do for other shapes)."""
    if isinstance(r, RedisCluster):
        _refresh(r)


def _refresh(rc: RedisCluster) -> None:
    try:
        rc.nodes_manager.initialize()
    except REDIS_ERRORS as e:
        logger.warning("Could not refresh the Redis Cluster slot map: %s", e)


def _delete_cluster(
    rc: RedisCluster, groups: Sequence[Group], replicas: int, timeout_ms: int
) -> dict[int, BaseException]:
    """Per master node: one pipeline of DELs (each within one slot) and WAIT. A node that
    fails, redirects or falls short is retried once after refreshing the slot map."""
    failures: dict[int, BaseException] = {}
    todo = list(range(len(groups)))
    for attempt in range(2):
        by_node: dict[str, list[int]] = {}
        for i in todo:
            try:
                by_node.setdefault(rc.get_node_from_key(groups[i][0]).name, []).append(i)
            except REDIS_ERRORS as e:
                failures[i] = e
        retry: list[int] = []
        for name, indices in by_node.items():
            node = rc.get_node(node_name=name)
            try:
                pool = rc.get_redis_connection(node).connection_pool
                acked, _ = _send(pool, [groups[i] for i in indices], replicas, timeout_ms)
            except REDIS_ERRORS as e:
                failures.update(dict.fromkeys(indices, e))
                retry += indices
                continue
            if acked >= replicas:
                for i in indices:
                    failures.pop(i, None)
                continue
            _refresh(rc)  # still the slot's master? then its replicas only lag
            for i in indices:
                if rc.get_node_from_key(groups[i][0]).name == name:
                    failures.pop(i, None)
                else:
                    failures[i] = NotReplicated(f"{name} no longer serves this slot")
                    retry.append(i)
        if not retry or attempt:
            break
        _refresh(rc)
        todo = retry
    return failures


def primaries(r: Any) -> list[redis.Redis]:
    """A client per master node (one for a Redis that is not a Cluster)."""
    if isinstance(r, RedisCluster):
        return [r.get_redis_connection(node) for node in r.get_primaries()]
    return [r]


def scan(r: Any, match: str, count: int) -> Iterator[bytes]:
    """SCAN every master node (a Cluster's SCAN is per node)."""
    for node in primaries(r):
        yield from node.scan_iter(match=match, count=count)


def scan_unlink(r: Any, match: str, batch: int) -> int:
    """UNLINK every key matching `match`, per node and per slot; the number unlinked."""
    deleted = 0
    for node in primaries(r):
        chunk: list[bytes] = []
        for key in node.scan_iter(match=match, count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += _unlink_by_slot(node, chunk, isinstance(r, RedisCluster))
                chunk = []
        if chunk:
            deleted += _unlink_by_slot(node, chunk, isinstance(r, RedisCluster))
    return deleted


def _unlink_by_slot(node: redis.Redis, keys: list[bytes], cluster: bool) -> int:
    if not cluster:
        return int(node.unlink(*keys))
    by_slot: dict[int, list[bytes]] = {}
    for key in keys:
        by_slot.setdefault(key_slot(key), []).append(key)
    pipe = node.pipeline(transaction=False)
    for same_slot in by_slot.values():
        pipe.unlink(*same_slot)
    # A slot that moved meanwhile answers MOVED: its keys are the new owner's to scan.
    return sum(n for n in pipe.execute(raise_on_error=False) if isinstance(n, int))


def ping(r: Any, shard: int) -> None:
    if isinstance(r, RedisCluster) and shard != ALL:
        r.ping(target_nodes=r.nodes_manager.get_node_from_slot(shard))
    else:
        r.ping()


def fingerprint(r: Any) -> dict[int, str]:
    """Who serves each shard now, as node address and run id: a change means a failover or a
    restart, after which invalidations the old master acknowledged may be missing."""
    if isinstance(r, RedisCluster):
        _refresh(r)
        first = _shards(r)[1]
        return {
            first[node.name]: f"{node.name}/{r.get_redis_connection(node).info('server')['run_id']}"
            for node in r.get_primaries()
            if node.name in first
        }
    master = _sentinel_master(r)
    if master is not None:
        r.connection_pool.get_master_address()  # this pool follows the master from now on
    return {ALL: f"{master}/{r.info('server')['run_id']}"}


def set_socket_timeout(r: Any, seconds: float) -> None:
    """Change the read timeout of every connection of `r`'s pools, idle and in use."""
    if isinstance(r, RedisCluster):
        pools = [r.get_redis_connection(n).connection_pool for n in r.get_nodes()]
    else:
        pools = [r.connection_pool]
    for pool in pools:
        pool.connection_kwargs["socket_timeout"] = seconds
        with pool._lock:
            connections = [*pool._available_connections, *pool._in_use_connections]
        for conn in connections:
            conn.socket_timeout = seconds
            conn.update_current_socket_timeout(seconds)
