"""`make faults`' scenarios of issue 12 (d-g): the Redis each runs on (a Sentinel set or a
Cluster from tests/support/topologies.py, or the harness's redis-server), the fault each
injects, and the end-of-run check that every write's invalidation took effect.

d: SENTINEL FAILOVER under load (the old master keeps taking writes until Sentinel demotes it,
   ~10 s later); e: split brain (the master paused until its replica is promoted, then resumed at
   once, before the sentinels switch: a master in its own eyes until demoted); f: one of a Cluster's 3 masters paused until its
   replica takes over, then resumed; g: busy-looping processes next to the app (its own CPU
   saturated), Redis healthy throughout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from bench.faults_analysis import Marks, older
from bench.faults_options import Options
from bench.harness.env import PY
from bench.loadgen import Load
from tests.support.topologies import ClusterSet, RedisNode, SentinelSet, wait_until

# Polling the topology: often enough to time a promotion to ~0.1 s, bounded in time.
POLL_TIMEOUT_S = 45.0


@dataclass
class Topology:
    """The Redis of one run of d-f: the app's REDIS_* settings and the servers to stop."""

    env: dict[str, str]
    sentinel: SentinelSet | None = None
    cluster: ClusterSet | None = None

    @classmethod
    def start(cls, scenario: str, workdir: Path) -> Topology:
        workdir.mkdir(parents=True, exist_ok=True)
        if scenario in ("d", "e"):
            s = SentinelSet(workdir, replicas=1).start()
            sentinels = ",".join(f"{host}:{port}" for host, port in s.sentinel_addresses)
            return cls({"REDIS_URL": f"redis://{s.service}/0", "REDIS_SENTINELS": sentinels}, s)
        c = ClusterSet(workdir, masters=3, replicas=1).start()
        return cls({"REDIS_URL": c.url, "REDIS_CLUSTER": "1"}, cluster=c)

    def stop(self) -> None:
        for topology in (self.sentinel, self.cluster):
            if topology is not None:
                topology.stop()

    def users_off(self, failing: RedisNode, users: list[str]) -> list[int]:
        """Indices of the users whose entries live on other masters than `failing` (their
        status key's hash tag is the user id)."""
        assert self.cluster is not None
        served = [
            (int(start), int(end))
            for start, end, master, *_ in self.cluster._slots()
            if int(master[1]) == failing.port
        ]
        return [
            i
            for i, user in enumerate(users)
            if not any(lo <= key_slot(user.encode()) <= hi for lo, hi in served)
        ]


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _role(node: RedisNode) -> tuple[str, str]:
    """(role, master_link_status) of a node, as it says itself."""
    info: Any = node.client(0.5).info("replication")
    return str(info["role"]), str(info.get("master_link_status", ""))


def _wait_role(node: RedisNode, role: str, what: str) -> float:
    wait_until(
        lambda: _role(node)[0] == role and (role == "master" or _role(node)[1] == "up"),
        POLL_TIMEOUT_S,
        what,
    )
    return time.monotonic()


def inject(
    scenario: str,
    topology: Topology | None,
    users: list[str],
    t0: float,
    o: Options,
    spawn: Callable[[list[str]], subprocess.Popen[Any]],
    stop: Callable[[subprocess.Popen[Any]], None],
    log: Callable[[str], None],
) -> Marks:
    """The scenario's fault at t0 + ha_fault_at; returns once it is over (the old master
    demoted, the shard's replica serving, the hogs gone)."""
    m = Marks()
    sleep_until(t0 + o.ha_fault_at)
    if scenario == "g":
        m.fault_start = time.monotonic()
        hogs = [spawn([PY, "-c", "while True: pass"]) for _ in range(o.hogs)]
        log(f"  g: {o.hogs} CPU hogs started")
        sleep_until(t0 + o.ha_duration - 5)
        for hog in hogs:
            stop(hog)
        m.recovered = time.monotonic()
        log("  g: CPU hogs stopped")
        return m
    assert topology is not None
    if topology.sentinel is not None:
        s = topology.sentinel
        old = s.master()
        [new] = [n for n in s.nodes if n.port != old.port]
        m.fault_start = time.monotonic()
        if scenario == "d":
            s.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", s.service)
            log(f"  d: SENTINEL FAILOVER sent (master {old.name})")
            m.promoted = _wait_role(new, "master", f"{new.name} promoted")
        else:
            old.pause()
            log(f"  e: master {old.name} paused")
            m.promoted = _wait_role(new, "master", f"{new.name} promoted")
            old.resume()  # back before the sentinels name the new master: both take writes
            m.resumed = time.monotonic()
            log(f"  e: {new.name} promoted; old master resumed (a master in its own eyes)")
        wait_until(lambda: s.master_address() != old.address, POLL_TIMEOUT_S, "+switch-master")
        m.switched = time.monotonic()
        m.demoted = m.recovered = _wait_role(old, "slave", f"{old.name} demoted and in sync")
        log(
            f"  {scenario}: promoted +{m.promoted - m.fault_start:.1f} s, +switch-master "
            f"+{m.switched - m.fault_start:.1f} s, old master demoted "
            f"+{m.demoted - m.fault_start:.1f} s after the fault"
        )
        return m
    assert topology.cluster is not None
    c = topology.cluster
    failing = c.masters()[0]
    m.healthy_users = topology.users_off(failing, users)
    failing.pause()
    m.fault_start = time.monotonic()
    log(f"  f: master {failing.name} paused ({len(users) - len(m.healthy_users)} users on it)")
    new = c.wait_for_new_master(failing, timeout=POLL_TIMEOUT_S)
    m.promoted = m.recovered = time.monotonic()
    time.sleep(1.0)
    failing.resume()
    m.resumed = time.monotonic()
    log(
        f"  f: {new.name} serves its slots +{m.promoted - m.fault_start:.1f} s after the fault; "
        "old master resumed (it rejoins as a replica)"
    )
    return m


def check_invalidations(load: Load, users: list[int]) -> list[int]:
    """Once the load is over and nothing writes: read each user through the app once and
    compare with the database. The users whose answer is older than their rows (a write whose
    invalidation was lost: no later read shows it until the entry's TTL runs out)."""
    lost = []
    for user in users:
        load.read(user)
        _u, _s, _e, status, _c, _st, versions = load.rec.reads[-1]
        if status == 200 and older(versions or [], load.versions_of(user)):
            lost.append(user)
    return lost
