"""Coming back from a Redis outage: the breaker's probe, the replay before reads resume, and
re-warming the users this process served last (all off the request path)."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection

from connectors.cache import outbox, store, topology
from connectors.cache.breaker import State
from connectors.cache.keys import POPULATED_KEY
from connectors.errors import CacheUnavailable

logger = logging.getLogger("connectors.cache")

# hook(recent_user_ids newest first, lost_data): see on_recovery().
RecoveryHook = Callable[[list[str], bool], None]
_recovery_hooks: list[RecoveryHook] = []

# The distinct users this process served lately, least recent first: after an outage they are
# read through again (hits cost one GET each). An OrderedDict used as an LRU; concurrent threads
# may race on it, which can only misplace a user in the order, never break a read.
_recent_users: collections.OrderedDict[str, None] = collections.OrderedDict()


def remember_user(user_id: str) -> None:
    limit = settings.CACHE_WARM_ON_RECOVERY
    if limit <= 0:
        return
    _recent_users[user_id] = None
    _recent_users.move_to_end(user_id)
    while len(_recent_users) > limit:
        try:
            _recent_users.popitem(last=False)
        except KeyError:  # another thread emptied it meanwhile
            break


def on_recovery(hook: RecoveryHook) -> RecoveryHook:
    """Register `hook(recent_user_ids, lost_data)`, called once Redis is back: with the users
    this process served last, and whether Redis came back empty (true in one process only).
    Registered from AppConfig.ready(), so every process has it whatever it imported."""
    if hook not in _recovery_hooks:
        _recovery_hooks.append(hook)
    return hook


def probe(shard: int = topology.ALL) -> None:
    """Test a recovering shard off the request path: PING, replay what it missed, and only then
    let reads use it again; then re-warm. Always ends the probe one way or the other: a probe
    that died would leave the breaker half-open for good."""
    breaker = store.breaker_for(shard)
    try:
        try:
            store.call_maintenance(lambda r: topology.ping(r, shard), store.confirm_timeout())
        except CacheUnavailable as e:
            breaker.probe_failed(e)
            return
        topology.refresh(store.redis_client())  # a Cluster's slots may have a new master now
        ready, lost_data = _replay_and_check_populated(shard)
        if not ready:
            breaker.probe_failed("pending invalidations could not be replayed")
            return
        breaker.probe_succeeded()
        _run_recovery_hooks(lost_data)
    except BaseException as e:
        if breaker.state is not State.CLOSED:
            breaker.probe_failed(f"{type(e).__name__}: {e}")
        if not isinstance(e, Exception):
            raise
        logger.exception("The Redis probe failed")
    finally:
        connection.close()  # the replay and the warm-up used this thread's own connection


def _replay_and_check_populated(shard: int = topology.ALL) -> tuple[bool, bool]:
    """(whether every pending invalidation of the shard reached Redis, whether Redis lost its
    data).

    A restart without persistence removes POPULATED_KEY. It is checked before the breaker
    closes, while no request writes to Redis; the one process whose SET NX recreates it
    re-warms the most active users for everyone. (A Cluster shard's probe does not check: the
    key lives in one shard.)
    """
    try:
        if outbox.replay(shard=None if shard == topology.ALL else shard):
            return False, False
    except DatabaseError as e:
        logger.warning("Cannot replay pending invalidations, database unavailable: %s", e)
        return False, False
    if shard != topology.ALL:
        return True, False
    try:
        lost = store.call(
            lambda r: r.set(store.full_key(POPULATED_KEY), b"1", nx=True), bypass_breaker=True
        )
    except CacheUnavailable:
        return False, False
    return True, bool(lost)


def _run_recovery_hooks(lost_data: bool) -> None:
    if settings.CACHE_WARM_ON_RECOVERY <= 0:
        return
    try:
        users = list(reversed(_recent_users))  # newest first
    except RuntimeError:  # resized by a request thread mid-copy: this copy will do
        users = list(_recent_users.copy())[::-1]
    started = time.perf_counter()
    for hook in _recovery_hooks:
        try:
            hook(users, lost_data)
        except Exception:  # a failed warm-up only costs hit ratio, never correctness
            logger.exception("Re-warming the cache after recovery failed")
            return
    logger.info(
        "Re-warmed %d recently served user(s) in %.1fs after recovery",
        len(users),
        time.perf_counter() - started,
    )
