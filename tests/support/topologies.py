"""Throwaway Redis topologies on free loopback ports, for tests and fault scenarios.

RedisNode (one redis-server, or a sentinel), SentinelSet (a master, replicas and three
sentinels), ClusterSet (masters with a replica each). Each start() waits until the topology is
usable; stop() kills every process it started. The shared Redis is never touched. pgbouncer in
transaction mode: tests/support/pgbouncer.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, as Redis Cluster needs."""
    for _ in range(100):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port + 10000)) != 0:
                return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (redis.RedisError, OSError) as e:
            last, result = e, None
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout:g} s (last error: {last})")


class RedisNode:
    """One redis-server (or sentinel, when `config` holds a sentinel configuration)."""

    def __init__(self, workdir: Path, *args: str, port: int | None = None, config: str = ""):
        self.port = port or free_port()
        self.dir = workdir / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def name(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.name}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A client of this node alone, no retries (a paused node costs one timeout)."""
        return redis.Redis(
            HOST,
            self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def start(self) -> RedisNode:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        base = ["--port", str(self.port), "--bind", HOST, "--dir", str(self.dir)]
        if self.config:
            conf = self.dir / "sentinel.conf"  # a sentinel rewrites its own configuration
            conf.write_text(self.config)
            argv = [binary, str(conf), "--sentinel", *base, "--loglevel", "warning"]
        else:
            argv = [binary, *base, "--save", "", "--appendonly", "no", "--loglevel", "warning"]
        argv += list(self.args)
        log = open(self.dir / "log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.alive() and self.client(0.5).ping(), 10, f"{self.name} up")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process
            self.resume()
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port stays open and nothing answers (a hung or partitioned node)."""
        assert self.process
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGCONT)

    def role(self) -> str:
        return str(self.client().execute_command("ROLE")[0].decode())


def _cache_options(timeout: float) -> dict[str, Any]:
    """The single-node OPTIONS connectors_site/settings.py builds, with `timeout`."""
    return {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "SERIALIZER": "connectors.cache.serializer.TaggedJSONSerializer",
        "SOCKET_CONNECT_TIMEOUT": timeout,
        "SOCKET_TIMEOUT": timeout,
        "IGNORE_EXCEPTIONS": True,
        "CONNECTION_POOL_KWARGS": {
            "health_check_interval": 30,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        },
    }


class SentinelSet:
    """A master, `replicas` replicas and three sentinels (quorum 2), all on loopback.

    `service` is unique per set: django-redis caches pools by URL, and the URL names it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
        node_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.nodes = [RedisNode(workdir, *node_args)]
        self.nodes += [RedisNode(workdir, *node_args) for _ in range(replicas)]
        self.service = f"svc{self.nodes[0].port}"
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinels: list[RedisNode] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [s.address for s in self.sentinels]

    def start(self) -> SentinelSet:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> SentinelSet:
        master = self.nodes[0].start()
        for replica in self.nodes[1:]:
            replica.args += ("--replicaof", HOST, str(master.port))
            replica.start()
        config = (
            f"sentinel monitor {self.service} {HOST} {master.port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.sentinels = [RedisNode(self.workdir, config=config).start() for _ in range(3)]
        self.wait_stable()
        return self

    def wait_stable(self, timeout: float = 30) -> None:
        """Every sentinel sees the master, every replica, and both other sentinels."""

        def stable() -> bool:
            for sentinel in self.sentinels:
                state: Any = sentinel.client().sentinel_master(self.service)
                if not (
                    "master" in state["flags"]
                    and "s_down" not in state["flags"]
                    and state["num-other-sentinels"] == len(self.sentinels) - 1
                    and state["num-slaves"] >= len(self.nodes) - 1
                ):
                    return False
            return all(n.client().info("replication")["role"] == "slave" for n in self.replicas())

        wait_until(stable, timeout, "sentinels agreeing on the set")

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.kill()

    def master_address(self) -> tuple[str, int]:
        """The master as the sentinels name it now (the first one that answers)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                found: Any = sentinel.client(0.5).sentinel_get_master_addr_by_name(self.service)
                host, port = found
                return (host.decode() if isinstance(host, bytes) else str(host), int(port))
        raise RuntimeError("no sentinel answered")

    def node(self, address: tuple[str, int]) -> RedisNode:
        return next(n for n in self.nodes if n.port == int(address[1]))

    def master(self) -> RedisNode:
        return self.node(self.master_address())

    def replicas(self) -> list[RedisNode]:
        master = self.master_address()
        return [n for n in self.nodes if n.port != master[1]]

    def wait_for_new_master(self, old: RedisNode, timeout: float = 30) -> RedisNode:
        """Until every sentinel names a master other than `old` (+switch-master)."""

        def switched() -> RedisNode | None:
            names = {
                cast(Any, s.client(0.5).sentinel_get_master_addr_by_name(self.service))[1]
                for s in self.sentinels
            }
            if len(names) == 1 and int(next(iter(names))) != old.port:
                return self.node((HOST, int(next(iter(names)))))
            return None

        return wait_until(switched, timeout, f"a master other than {old.name}")

    def failover(self) -> RedisNode:
        """A manual failover (SENTINEL FAILOVER): the old master is reconfigured at once."""
        old = self.master()
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", self.service)
        return self.wait_for_new_master(old)

    def cache_settings(
        self,
        *,
        prefix: str,
        timeout: float = 0.2,
        factory: str = "connectors.cache.clients.SentinelFactory",
    ) -> dict[str, Any]:
        """CACHES["default"] for this set, as settings.py builds it from REDIS_SENTINELS."""
        options = _cache_options(timeout)
        options.update(
            CLIENT_CLASS="django_redis.client.SentinelClient",
            CONNECTION_FACTORY=factory,
            SENTINELS=self.sentinel_addresses,
            SENTINEL_KWARGS={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{self.service}/0",
            "KEY_PREFIX": prefix,
            "OPTIONS": options,
        }


class ClusterSet:
    """`masters` masters with `replicas` replica(s) each, full coverage not required (a failing
    shard does not take the others down), created with redis-cli --cluster create."""

    def __init__(
        self, workdir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        args = (
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        self.nodes = [
            RedisNode(workdir, *args, port=free_cluster_port())
            for _ in range(masters * (1 + replicas))
        ]
        self.replicas_per_master = replicas
        self._first_slot: dict[int, int] = {}

    @property
    def url(self) -> str:
        return f"redis://{self.nodes[0].name}/0"

    def start(self) -> ClusterSet:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ClusterSet:
        for node in self.nodes:
            node.start()
        binary = shutil.which("redis-cli")
        assert binary, "redis-cli is not installed"
        create = [binary, "--cluster", "create", *(n.name for n in self.nodes)]
        create += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        subprocess.run(
            create,
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node says the cluster is ok, and every master has a synced replica."""

        def healthy() -> bool:
            live = [n for n in self.nodes if n.alive()]
            if any(n.client().cluster("info")["cluster_state"] != "ok" for n in live):
                return False
            return all(
                m.client().info("replication")["connected_slaves"] >= self.replicas_per_master
                for m in self.masters()
            )

        wait_until(healthy, timeout, "a healthy cluster")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def _slots(self) -> list[list[Any]]:
        for node in self.nodes:
            if node.alive():
                with contextlib.suppress(redis.RedisError):
                    slots = list(node.client(0.5).execute_command("CLUSTER", "SLOTS"))
                    for entry in slots:  # remembered: a failed master no longer appears
                        self._first_slot[int(entry[2][1])] = int(entry[0])
                    return slots
        raise RuntimeError("no cluster node answered")

    def masters(self) -> list[RedisNode]:
        ports = {int(entry[2][1]) for entry in self._slots()}
        return [n for n in self.nodes if n.port in ports]

    def master_for_key(self, key: str) -> RedisNode:
        slot = int(self.nodes[0].client().cluster("keyslot", key))
        for start, end, master, *_ in self._slots():
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"slot {slot} is not covered")

    def replica_of(self, master: RedisNode) -> RedisNode:
        """A replica connected to `master` now (its own word: INFO replication)."""
        replication = master.client().info("replication")
        for name, value in replication.items():
            if name.startswith("slave") and isinstance(value, dict):
                return next(n for n in self.nodes if n.port == int(value["port"]))
        raise RuntimeError(f"{master.name} has no replica")

    def wait_for_new_master(self, old: RedisNode, timeout: float = 30) -> RedisNode:
        """Until the slots `old` served are served by another node (its replica, promoted)."""
        self._slots()
        first = self._first_slot[old.port]

        def moved() -> RedisNode | None:
            for start, end, primary, *_ in self._slots():
                if start <= first <= end and int(primary[1]) != old.port:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
            return None

        return wait_until(moved, timeout, f"a new master for {old.name}'s slots")

    def cache_settings(
        self,
        *,
        prefix: str,
        timeout: float = 0.2,
        client: str = "connectors.cache.clients.ClusterClient",
    ) -> dict[str, Any]:
        """CACHES["default"] for this cluster, as settings.py builds it with REDIS_CLUSTER=1."""
        options = _cache_options(timeout)
        options["CLIENT_CLASS"] = client
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": self.url,
            "KEY_PREFIX": prefix,
            "OPTIONS": options,
        }
