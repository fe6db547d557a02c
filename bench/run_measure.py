"""How `make bench` measures one scenario: a freshly started stack (this service under granian,
as `make serve` runs it, or gunicorn; or the Express seed peer), wrk, and the servers' own
counters.

Postgres publishes a backend's counters when it goes idle for a while or exits, so every measured
phase runs in a freshly started server that is stopped (backends exit) before the counters are
read; warm-ups run on that server before the measured seconds. The knobs are read here (see bench/run.py).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import http.client
import itertools
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.cpu import CpuWatch
from bench.harness.env import BENCH, PY, ROOT, app_env, envflt, envint, make_log, make_secrets
from bench.harness.postgres import SHARED_ADMIN_URL, database_url
from bench.harness.procs import Harness
from bench.peers.express import ExpressPeer, free_port
from tests.support.procs import psql, sh

log = make_log("bench")
LUA = BENCH / "wrk" / "status.lua"
STATUS = "/api/connectors/status/"
CEILING = "/api/bench/ceiling/"

USERS = envint("BENCH_USERS", 10_000)
DURATION = envint("BENCH_DURATION", 8)
WARMUP = envint("BENCH_WARMUP", 2)
CONNS = envint("BENCH_CONNECTIONS", 100)
THREADS = envint("BENCH_THREADS", 2)
# 4 worker processes, as many as the Express peer's cluster workers; threads per granian
# worker as `make serve` runs them by default (WEB_THREADS).
WORKERS = envint("BENCH_WORKERS", 4)
WEB_THREADS = envint("BENCH_WEB_THREADS", 4)
REMOTE_MS = envflt("BENCH_REMOTE_DB_MS", 20.0)
COLD_SECONDS = envint("BENCH_COLD_SECONDS", 10)
ZIPF_S = envflt("BENCH_ZIPF_S", 1.0)
WRITE_PCT = envflt("BENCH_WRITE_PCT", 5.0)
# Issue 11's server choice: the warm-hit load on gunicorn gthread and sync too (0: skip them).
SERVER_ROWS = envint("BENCH_SERVER_ROWS", 1)
SERVER_SECONDS = envint("BENCH_SERVER_SECONDS", 4)
PROBES = 10  # timed Python clients next to wrk in the cold-start scenario
# A dashboard's load is throttled per user and per IP like any other; every request here comes
# from 127.0.0.1 and the Zipf head user sends ~10% of them, so the limits are set far above what
# the run can send: the throttle's Redis work runs on every request and never answers 429.
THROTTLE_RATE = "60000000/min"
SERVER = "granian"  # what `make serve` runs (connectors_site/server.py)
# INFO commandstats entries that are no request's: the harness reading the counters, the hit
# counters' flush, connection set-up.
NOT_REQUEST_COMMANDS = frozenset(
    {"info", "hgetall", "hincrby", "ping", "select", "hello", "client|setinfo", "client|setname"}
)


@dataclass
class Stack:
    """What answers a row: this service under `server` with `env`, or the Express seed peer
    (server "express"), with or without its Redis."""

    name: str  # "service" | "express"
    server: str  # granian | gunicorn-gthread | gunicorn-sync | express
    env: dict[str, str] = field(default_factory=dict)
    redis: bool = True

    @property
    def label(self) -> str:
        return "Express seed" if self.name == "express" else f"service ({self.server})"


@dataclass
class Served:
    """A started stack: the port it answers on and how to stop it."""

    port: int
    stop: Callable[[], None]


def parse_bench_json(out: str) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return dict(json.loads(line[len("BENCH_JSON ") :]))
    raise RuntimeError(f"no BENCH_JSON line in output:\n{out[-3000:]}")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()}


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


@dataclass
class BenchHarness(Harness):
    """The run's own database on the shared Postgres, its redis-server (DB 12) and key prefix,
    the token wrk sends, and the servers' counters."""

    db_name: str = ""
    prefix: str = ""
    token: str = ""  # service role: the harness's own requests (none of the load)
    users_file: str = ""
    # "<user> <token>" per line, in users_file's order: every request carries its user's token.
    tokens_file: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    peer_port: int = 0
    peers: list[ExpressPeer] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    pg_overhead: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=make_secrets)
    # Idle-server DB transactions per second with the cache on (see background_db_rate).
    background_rate: float = 0.0

    def app_env(self, *, redis: bool = True, latency_ms: float = 0.0) -> dict[str, str]:
        """The served app's environment (and manage.py's, the side writer's, micro's)."""
        env = app_env(
            database_url=database_url(SHARED_ADMIN_URL, self.db_name),
            redis_url=f"redis://127.0.0.1:{self.redis.port}/12" if redis else None,
            prefix=self.prefix,
            secret_env=self.secrets,
        )
        env.update(
            BENCH_CEILING="1",
            BENCH_DB_LATENCY_MS=str(latency_ms),
            THROTTLE_USER_RATE=THROTTLE_RATE,
            THROTTLE_IP_RATE=THROTTLE_RATE,
        )
        return env

    def service(self, env: dict[str, str], server: str = SERVER) -> Stack:
        return Stack("service", server, env)

    def express(self, *, redis: bool) -> Stack:
        return Stack("express", "express", redis=redis)

    def serve(self, stack: Stack) -> Served:
        if stack.name == "express":
            return self.serve_express(redis=stack.redis)
        proc = self.start_app(
            stack.env,
            workers=WORKERS,
            log=self.tmp / "server.log",
            server=stack.server,
            threads=WEB_THREADS,
        )
        return Served(self.http_port, lambda: self.stop(proc))

    def serve_express(self, *, redis: bool) -> Served:
        """The peer on the same database, this run's redis-server (DB 13, its own prefix), the
        same JWT secret, as many workers as the service has."""
        if not self.peer_port:
            self.peer_port = free_port()
        peer = ExpressPeer(
            database_url=database_url(SHARED_ADMIN_URL, self.db_name),
            jwt_secret=self.secrets["SUPABASE_JWT_SECRET"],
            redis_url=f"redis://127.0.0.1:{self.redis.port}/13" if redis else None,
            key_prefix=f"{self.prefix}-express:",
            workers=WORKERS,
            port=self.peer_port,
            log_path=self.tmp / "express.log",
        )
        self.peers.append(peer)
        peer.start()

        def stop() -> None:
            peer.stop()
            self.peers.remove(peer)

        return Served(self.peer_port, stop)

    def stop_app(self, served: Served) -> None:
        served.stop()
        self.wait_db_idle()

    def cleanup(self) -> None:
        for peer in list(self.peers):
            with contextlib.suppress(Exception):
                peer.stop(grace=5)
        super().cleanup()

    def psql(self, sql: str, *, db: str = "postgres") -> str:
        return psql(sql, db=db)

    # --- counters -----------------------------------------------------------------------------
    def wait_db_idle(self) -> None:
        """Until no backend is connected to the bench database (so all have published stats)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            query = f"select count(*) from pg_stat_activity where datname = '{self.db_name}'"  # noqa: S608 - our own name
            if self.psql(query).strip() == "0":
                time.sleep(0.05)
                return
            time.sleep(0.1)
        raise RuntimeError(f"backends still connected to {self.db_name} after 15 s")

    def pg_counters(self) -> dict[str, int]:
        """Read with no connection to the bench DB open (call after wait_db_idle)."""
        table = (
            self.psql(
                "select coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0), "
                "coalesce(sum(n_tup_upd + n_tup_ins + n_tup_del), 0) from pg_stat_user_tables "
                "where relname = 'connectors_platformconnection'",
                db=self.db_name,
            )
            .strip()
            .split("|")
        )
        self.wait_db_idle()  # that psql session's own transaction is published before the read below
        query = f"select xact_commit + xact_rollback from pg_stat_database where datname = '{self.db_name}'"  # noqa: S608 - our own name
        xacts = self.psql(query).strip()
        return {"xacts": int(xacts), "table_scans": int(table[0]), "rows_written": int(table[1])}

    def pg_window(self, before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        """after - before, minus what reading the counters itself costs (calibrated)."""
        return {k: v - self.pg_overhead.get(k, 0) for k, v in delta(after, before).items()}

    def calibrate(self) -> None:
        self.wait_db_idle()
        a = self.pg_counters()
        b = self.pg_counters()
        self.pg_overhead = delta(b, a)
        log(
            f"reading the Postgres counters costs {self.pg_overhead} (subtracted from every window)"
        )

    def redis_counters(self) -> dict[str, int]:
        r = self.redis.client(db=12)
        stats = r.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        # Read events: a request, or a pipeline sent in one write, is one (a round trip).
        calls["_reads"] = int(r.info("stats")["total_reads_processed"])
        hits = r.hgetall(f"{self.prefix}:1:cache_stats")
        calls["_hits"] = int(hits.get(b"hits", 0))
        calls["_misses"] = int(hits.get(b"misses", 0))
        r.close()
        return calls

    # --- load -----------------------------------------------------------------------------------
    def wrk(
        self,
        *,
        path: str,
        mode: str,
        seconds: float,
        conns: int = CONNS,
        threads: int = THREADS,
        write_pct: float = 0.0,
        record: bool = True,
        port: int = 0,
        close: bool = False,
    ) -> dict[str, Any]:
        env = dict(os.environ)
        env.update(
            BENCH_TOKENS_FILE=self.tokens_file,
            BENCH_CLOSE="1" if close else "0",
            BENCH_PATH=path,
            BENCH_MODE=mode,
            BENCH_ZIPF_S=str(ZIPF_S),
            BENCH_WRITE_PCT=str(write_pct),
            BENCH_THREADS=str(threads),
            BENCH_PROVIDERS=",".join(self.providers),
        )
        threads = min(threads, conns)
        cmd = [
            *("wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s"),
            *("--timeout", "10s", "-s", str(LUA.relative_to(ROOT))),
            f"http://127.0.0.1:{port or self.http_port}",
        ]
        if record:
            line = (
                f"BENCH_TOKENS_FILE=tokens.txt BENCH_MODE={mode} BENCH_PATH={path}"
                + (f" BENCH_WRITE_PCT={write_pct}" if write_pct else "")
                + (" BENCH_CLOSE=1" if close else "")
                + " "
                + " ".join(cmd)
            )
            if line not in self.commands:
                self.commands.append(line)
        result = parse_bench_json(sh(cmd, env=env, timeout=seconds + 60))
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        return result


# --- One scenario -------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    name: str
    conns: int
    wrk: dict[str, Any]
    pg: dict[str, int]
    redis: dict[str, int]
    side: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    other_cpu: float = 0.0
    # From the server's first request to its stop: background DB work runs this long.
    window_s: float = 0.0
    # Requests of an unrecorded warm-up on the measured server itself: in
    # the DB and Redis counters, so in the per-request denominators too, not in the latencies.
    warm_requests: int = 0
    # The harness's idle-server rate when the row was measured (set before any cached row).
    background_rate: float = 0.0
    stack: str = "service"  # or "express"
    server: str = SERVER

    @property
    def requests(self) -> int:
        return int(self.wrk["requests"])

    @property
    def hits(self) -> int:
        return self.redis.get("_hits", 0)

    @property
    def misses(self) -> int:
        return self.redis.get("_misses", 0)

    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        if not total and self.stack == "express":
            # The peer keeps no counters: the answers' own "cached" field, as wrk saw them.
            hits, misses = int(self.wrk["reads_hit"]), int(self.wrk["reads_miss"])
            return hits / (hits + misses) if hits else None
        return self.hits / total if total else None

    def round_trips_per_hit(self) -> float:
        """Redis read events (INFO stats total_reads_processed) per hit the service counted:
        one request or one pipeline is one, whatever the commands in it."""
        return self.redis.get("_reads", 0) / max(1, self.hits)

    def served(self) -> int:
        """Requests the server handled: its own read counters when the cache is on (they include
        the requests still in flight when wrk stops, which wrk does not count), plus writes."""
        reads = self.hits + self.misses
        if reads == 0:
            reads = self.requests + self.warm_requests - int(self.wrk.get("writes", 0))
        return reads + int(self.wrk.get("writes", 0)) + int(self.side.get("writes", 0))

    def db_per_req(self) -> float:
        return self.pg["xacts"] / max(1, self.served())

    def db_background(self) -> float:
        """Estimated transactions of the idle-server background (cache on only), plus the side
        writer's outbox sweeps (it counts them itself)."""
        if not self.hits + self.misses:
            return 0.0
        return self.background_rate * self.window_s + int(self.side.get("sweeps", 0))

    def db_net(self) -> float:
        """Transactions of the requests: total minus the idle-server background estimate."""
        return max(0.0, self.pg["xacts"] - self.db_background())

    def db_cell(self) -> str:
        if self.db_background() == 0:
            return f"{self.db_per_req():.3f}"
        return f"{self.db_per_req():.3f} ({self.db_net() / max(1, self.served()):.3f})"

    def redis_cmds(self) -> int:
        """Every command the requests made (the throttle's included), not the harness's own
        reads of the counters nor the workers' once-a-second HINCRBY of the hit counters."""
        return sum(
            calls
            for command, calls in self.redis.items()
            if not command.startswith("_") and command not in NOT_REQUEST_COMMANDS
        )

    def redis_per_req(self) -> float:
        return self.redis_cmds() / max(1, self.served())


def start_side_writer(
    h: BenchHarness, env: dict[str, str], rate: float, seconds: float
) -> subprocess.Popen[Any]:
    """bench/mix_writer.py, once Django is loaded in it (its start-up is not measured)."""
    side = h.spawn(
        [PY, "-m", "bench.mix_writer", h.users_file, str(rate), str(seconds), str(ZIPF_S)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert side.stdout is not None
    ready = side.stdout.readline()
    if not ready.startswith(b"READY"):
        raise RuntimeError(f"side writer did not start: {ready!r} {side.communicate()[1]!r}")
    return side


def measure(
    h: BenchHarness,
    key: str,
    name: str,
    stack: Stack,
    *,
    path: str,
    mode: str,
    warmup: float,
    seconds: float = DURATION,
    conns: int = CONNS,
    write_pct: float = 0.0,
    side_rate: float = 0.0,
    note: str = "",
    warm_in_place: bool = True,
    close: bool = False,
) -> Row:
    """One row. The warm-up runs on the measured server itself (warm_in_place): every worker
    past its first requests, one server start per row; its requests are in the DB and Redis
    counters and so in the per-request denominators, not in the latencies. Otherwise (the mix,
    whose side writer runs for the measured seconds only) on a separate server before it."""
    load = functools.partial(h.wrk, path=path, mode=mode, conns=conns, close=close)
    if warmup > 0 and not warm_in_place:
        served = h.serve(stack)
        load(seconds=warmup, write_pct=write_pct, record=False, port=served.port)
        h.stop_app(served)
    h.wait_db_idle()
    pg0 = h.pg_counters()
    served = h.serve(stack)
    # The background (the outbox sweeper) starts with a worker's first request: from here.
    window_started = time.monotonic()
    time.sleep(1.2)  # counters of the start-up (there should be none) are flushed
    r0 = h.redis_counters()
    watch = CpuWatch(database=h.db_name)
    watch.start()
    side = start_side_writer(h, stack.env, side_rate, seconds) if side_rate > 0 else None
    warm_requests = 0
    if warmup > 0 and warm_in_place:
        # Every worker of this very server past its first requests (imports, copy-on-write
        # page faults after the fork, lazily built objects): a row measures a steady
        # per-request cost, and a fresh server would count its start-up instead.
        warm_requests = int(load(seconds=warmup, record=False, port=served.port)["requests"])
    result = load(seconds=seconds, write_pct=write_pct, port=served.port)
    side_counts: dict[str, Any] = {}
    if side is not None:
        out, err = side.communicate(timeout=60)
        h.forget(side)
        side_counts = parse_bench_json(out.decode())
        if side_counts.get("errors"):
            log(f"side writer errors: {err.decode()[-500:]}")
    other_cpu = watch.stop()
    time.sleep(1.6)  # each worker flushes its hit/miss counters to Redis once a second
    r1 = h.redis_counters()
    h.stop_app(served)
    window_s = time.monotonic() - window_started
    pg1 = h.pg_counters()
    row = Row(
        key,
        name,
        conns,
        result,
        h.pg_window(pg0, pg1),
        delta(r1, r0),
        side=side_counts,
        note=note,
        other_cpu=other_cpu,
        window_s=window_s,
        warm_requests=warm_requests,
        background_rate=h.background_rate if stack.name == "service" else 0.0,
        stack=stack.name,
        server=stack.server,
    )
    counted = (
        "getrange",
        "get",
        "evalsha",
        "set",
        "setex",
        "del",
        "incr",
        "_hits",
        "_misses",
        "_reads",
    )
    errors = sum(row.wrk[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    log(
        f"{key} {name}: {row.wrk['rps']:.0f} req/s, p50 {row.wrk['p50'] / 1000:.2f} ms, "
        f"p99 {row.wrk['p99'] / 1000:.2f} ms, hit ratio {fmt_ratio(row.hit_ratio())}, "
        f"DB xacts {row.pg['xacts']}, table scans {row.pg['table_scans']}, redis "
        f"{ {k: v for k, v in row.redis.items() if v and k in counted} }, "
        f"other processes' CPU {row.other_cpu:.0f}%, "
        f"non-2xx/3xx {row.wrk['err_status']}, socket errors {errors}"
    )
    return row


def measure_one_connection(
    h: BenchHarness, key: str, label: str, stack: Stack, *, path: str, seconds: float
) -> Row:
    """Per-request latency over one keep-alive connection: what one dashboard load waits."""
    return measure(
        h,
        key,
        f"{label}, 1 connection ({seconds:g} s)",
        stack,
        path=path,
        mode="zipf",
        warmup=WARMUP,
        seconds=seconds,
        conns=1,
        note="unloaded latency",
    )


def background_db_rate(h: BenchHarness, stack: Stack, seconds: float = 6.0) -> float:
    """DB transactions per second of an idle server after a burst of hits: background threads
    such as the outbox sweeper (CACHE_OUTBOX_SWEEP_SECONDS), not requests. The burst is
    concurrent so that every worker serves some of it and starts its sweeper, as it does in a
    scenario (sequential requests may all land on one worker). Every user is cached by now, so
    the burst itself reads nothing from the database."""
    h.wait_db_idle()
    pg0 = h.pg_counters()
    served = h.serve(stack)
    started = time.monotonic()  # as in measure(): from the server's first request
    burst = h.wrk(path=STATUS, mode="zipf", seconds=1, record=False)
    if burst["reads_miss"]:
        raise RuntimeError(f"background measurement: {burst['reads_miss']} misses in the burst")
    time.sleep(seconds)
    h.stop_app(served)
    elapsed = time.monotonic() - started
    xacts = h.pg_window(pg0, h.pg_counters())["xacts"]
    log(f"idle server: {xacts} DB transactions in {elapsed:.1f} s (background threads)")
    return xacts / elapsed


# --- Cold start ---------------------------------------------------------------------------------
def probe_latencies(h: BenchHarness, seconds: float, out: list[tuple[float, float, bool]]) -> None:
    """One of PROBES threads: sequential GETs of Zipf-chosen users, each timed (wall second
    it started, latency in s, served from cache)."""
    users = Path(h.users_file).read_text().split()
    cdf = list(itertools.accumulate(1 / (k**ZIPF_S) for k in range(1, len(users) + 1)))
    rng = random.Random()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        user = users[bisect.bisect_left(cdf, rng.random() * cdf[-1])]
        headers = {"Authorization": f"Bearer {h.tokens[user]}"}
        started_wall, started = time.time(), time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", h.http_port, timeout=30)
        try:
            conn.request("GET", STATUS + user, headers=headers)
            body = conn.getresponse().read()
        except OSError:
            continue
        finally:
            conn.close()
        out.append((started_wall, time.perf_counter() - started, b'"cached":true' in body))


def per_second(
    res: dict[str, Any], samples: list[tuple[float, float, bool]]
) -> list[dict[str, Any]]:
    """wrk's per-second Lua counters and the probes' latencies, one bucket per wall second."""
    wall = sorted(int(k) for k in res["buckets"])
    first = wall[0] if wall else int(time.time())
    buckets = []
    for second in range(first, first + COLD_SECONDS):
        hits, misses, _ = res["buckets"].get(str(second), [0, 0, 0])
        lat = sorted(s[1] for s in samples if int(s[0]) == second)
        p_hits = sum(1 for s in samples if int(s[0]) == second and s[2])
        if hits + misses + len(lat) == 0:
            continue

        def pct(q: float, lat: list[float] = lat) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else float("nan")

        buckets.append(
            {
                "second": second - first + 1,
                "rps": hits + misses + len(lat),
                "p50": pct(0.5),
                "p90": pct(0.9),
                "max": lat[-1] * 1e6 if lat else float("nan"),
                "probes": len(lat),
                "hit_ratio_client": (hits + p_hits) / (hits + misses + len(lat)),
                "err_status": 0,
            }
        )
    return buckets


def cold_start(h: BenchHarness, stack: Stack) -> tuple[Row, list[dict[str, Any]]]:
    """Cache cleared (by prefix) at t=0, then one COLD_SECONDS wrk run; per-second buckets:
    throughput and hit ratio from wrk's Lua counters, latency from PROBES timed connections."""
    h.wait_db_idle()
    pg0 = h.pg_counters()
    served = h.serve(stack)
    # The background (the outbox sweeper) starts with a worker's first request: from here.
    window_started = time.monotonic()
    time.sleep(1.2)
    sh([PY, "manage.py", "clear_cache"], env=stack.env)
    r0 = h.redis_counters()
    watch = CpuWatch(database=h.db_name)
    watch.start()
    samples: list[tuple[float, float, bool]] = []
    probes = [
        threading.Thread(target=probe_latencies, args=(h, COLD_SECONDS, samples), daemon=True)
        for _ in range(PROBES)
    ]
    for t in probes:
        t.start()
    res = h.wrk(path=STATUS, mode="zipf", seconds=COLD_SECONDS, conns=CONNS - PROBES)
    for t in probes:
        t.join(timeout=40)
    other_cpu = watch.stop()
    time.sleep(1.6)
    r1 = h.redis_counters()
    h.stop_app(served)
    window_s = time.monotonic() - window_started
    pg1 = h.pg_counters()
    row = Row(
        "5",
        f"cold start ({COLD_SECONDS} s from an empty cache)",
        CONNS,
        res,
        h.pg_window(pg0, pg1),
        delta(r1, r0),
        note=f"wrk {CONNS - PROBES} conns + {PROBES} timed probes; per second below",
        other_cpu=other_cpu,
        window_s=window_s,
        background_rate=h.background_rate,
    )
    log(
        f"5 cold start: {row.wrk['rps']:.0f} req/s, hit ratio {fmt_ratio(row.hit_ratio())}, "
        f"DB xacts {row.pg['xacts']}, other processes' CPU {other_cpu:.0f}%"
    )
    return row, per_second(res, samples)
