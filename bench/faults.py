"""`make faults`: the status service under load while Redis or Postgres fail (issue 6).

What it does (everything on 127.0.0.1; everything it starts it stops, even on failure or Ctrl-C):

1. Starts a throwaway Postgres 15 cluster (initdb in a temp dir, a free port, fsync off: the data
   is thrown away) and a throwaway redis-server (no persistence), migrates, seeds
   FAULTS_USERS users x 3-7 connections (`manage.py seed_demo`) and issues a service-role token
   (exempt from throttling; the THROTTLE_* rates are turned off as well).
2. A DB-only baseline: the app without REDIS_URL under the same load for FAULTS_BASELINE s.
3. Three scenarios, each with the service's own configuration and with the NAIVE one
   (CACHE_BREAKER_THRESHOLD=0, CACHE_OUTBOX_SWEEP_SECONDS=0, REDIS_SOCKET_TIMEOUT=5,
   REDIS_CONNECT_TIMEOUT=5: django-redis' IGNORE_EXCEPTIONS behaviour with redis-py-like timeouts
   and no replay of lost invalidations):
   a. redis `kill -9` at FAULTS_AT s, restarted (same port, empty) at FAULTS_RECOVER_AT s;
   b. redis SIGSTOP at FAULTS_AT s, SIGCONT at FAULTS_RECOVER_AT s (its old entries survive,
      which is where lost invalidations come back as stale reads);
   c. Postgres `pg_ctl stop -m fast` at FAULTS_AT s, started again FAULTS_PG_DOWN s later;
      `redis-cli MONITOR` records what the run's redis-server executes, so that a 503 read is
      judged by whether the user's entry was in Redis during it (see `KeyTimeline`).
   Each run: a fresh redis-server, a fresh gunicorn (FAULTS_WORKERS sync workers, DEBUG off,
   LOG_LEVEL=warning), the cache warmed with the service's own `manage.py warm_cache` (as a
   production cache would be warm when an outage starts), then bench/loadgen.py for
   FAULTS_DURATION s at FAULTS_RATE requests/s (open loop), faults injected by this process.
4. Checks every read against the writes that returned before it started (see `stale_reads`),
   prints and writes bench/results/faults-<date>-<commit>.md and faults-latest.md, and ends with
   the summary lines. Exits 1 if a target fails for the service configuration.

Knobs (environment or the matching --option): FAULTS_DURATION=60, FAULTS_AT=20,
FAULTS_RECOVER_AT=40, FAULTS_PG_DOWN=10, FAULTS_BASELINE=10, FAULTS_RATE=100, FAULTS_THREADS=32,
FAULTS_WORKERS=3, FAULTS_USERS=2000, FAULTS_ZIPF_S=1.2, FAULTS_WRITE_PCT=3, FAULTS_SCENARIOS=a,b,c,
FAULTS_CONFIGS=service,naive.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import bisect
import contextlib
import datetime as dt
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import (
    environ_without_service_settings,
    free_port,
    git_commit,
    make_log,
    redis_server_cmd,
    sh,
    stop_process,
)

log = make_log("faults")
ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PY = sys.executable
PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
DB_NAME = "connectors_faults"

SCENARIOS = {
    "a": "redis kill -9, restart empty",
    "b": "redis SIGSTOP / SIGCONT",
    "c": "postgres stop -m fast",
}
NAIVE_ENV = {
    "CACHE_BREAKER_THRESHOLD": "0",
    "CACHE_OUTBOX_SWEEP_SECONDS": "0",
    "REDIS_SOCKET_TIMEOUT": "5",
    "REDIS_CONNECT_TIMEOUT": "5",
}


def wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.02)
    return False


class CpuWatch:
    """CPU used by processes that are not this benchmark's while a run lasts, in % of one CPU.

    The machine may be shared (other engineers' benchmarks and tests): latency targets mean
    little if something else was using the cores, so every run reports it. Ours = descendants
    of this process, and of the throwaway postmaster (pg_ctl daemonizes it away from us).
    """

    def __init__(self, postmaster: Callable[[], int | None]) -> None:
        self.postmaster = postmaster
        self.tck = os.sysconf("SC_CLK_TCK")
        self.t0 = 0.0
        self.s0: dict[int, int] = {}

    def _snapshot(self) -> dict[int, int]:
        table: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            except (OSError, IndexError, ValueError):
                continue
        roots = {os.getpid(), self.postmaster() or -1}

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid in roots:
                    return True
                if pid <= 1:
                    return False
                pid = table.get(pid, (0, 0))[0]
            return False

        return {pid: j for pid, (_p, j) in table.items() if not ours(pid)}

    def start(self) -> None:
        self.t0, self.s0 = time.monotonic(), self._snapshot()

    def stop(self) -> float:
        s1, elapsed = self._snapshot(), time.monotonic() - self.t0
        used = sum(j - self.s0[pid] for pid, j in s1.items() if pid in self.s0)
        return used / self.tck / max(elapsed, 1e-6) * 100


# --- Options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    duration: float
    fault_at: float
    recover_at: float
    pg_down: float
    baseline: float
    rate: float
    threads: int
    workers: int
    users: int
    zipf_s: float
    write_pct: float
    reset_share: float
    scenarios: tuple[str, ...]
    configs: tuple[str, ...]
    hit_target: float
    recovery_target_s: float
    p99_slack_ms: float


def parse_options(argv: list[str] | None = None) -> Options:
    def env(name: str, default: str) -> str:
        return os.environ.get(name, default)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=float(env("FAULTS_DURATION", "60")))
    p.add_argument("--fault-at", type=float, default=float(env("FAULTS_AT", "20")))
    p.add_argument("--recover-at", type=float, default=float(env("FAULTS_RECOVER_AT", "40")))
    p.add_argument("--pg-down", type=float, default=float(env("FAULTS_PG_DOWN", "10")))
    p.add_argument("--baseline", type=float, default=float(env("FAULTS_BASELINE", "10")))
    p.add_argument("--rate", type=float, default=float(env("FAULTS_RATE", "100")))
    p.add_argument("--threads", type=int, default=int(env("FAULTS_THREADS", "32")))
    p.add_argument("--workers", type=int, default=int(env("FAULTS_WORKERS", "3")))
    p.add_argument("--users", type=int, default=int(env("FAULTS_USERS", "2000")))
    p.add_argument("--zipf-s", type=float, default=float(env("FAULTS_ZIPF_S", "1.2")))
    p.add_argument(
        "--write-pct",
        type=float,
        default=float(env("FAULTS_WRITE_PCT", "3")),
        help="percent of operations that are API writes (each also triggers one SQL re-activation)",
    )
    p.add_argument("--reset-share", type=float, default=0.25, help="share of API writes = reset")
    p.add_argument("--scenarios", default=env("FAULTS_SCENARIOS", "a,b,c"))
    p.add_argument("--configs", default=env("FAULTS_CONFIGS", "service,naive"))
    p.add_argument("--hit-target", type=float, default=0.9)
    p.add_argument("--recovery-target-s", type=float, default=10.0)
    p.add_argument("--p99-slack-ms", type=float, default=15.0)
    a = p.parse_args(argv)
    scenarios = tuple(s for s in a.scenarios.split(",") if s)
    configs = tuple(c for c in a.configs.split(",") if c)
    if not set(scenarios) <= set(SCENARIOS) or not set(configs) <= {"service", "naive"}:
        p.error("scenarios are a,b,c; configs are service,naive")
    if not 0 < a.fault_at < a.recover_at < a.duration or a.fault_at + a.pg_down >= a.duration:
        p.error("need 0 < fault-at < recover-at < duration and fault-at + pg-down < duration")
    return Options(
        duration=a.duration,
        fault_at=a.fault_at,
        recover_at=a.recover_at,
        pg_down=a.pg_down,
        baseline=a.baseline,
        rate=a.rate,
        threads=a.threads,
        workers=a.workers,
        users=a.users,
        zipf_s=a.zipf_s,
        write_pct=a.write_pct,
        reset_share=a.reset_share,
        scenarios=scenarios,
        configs=configs,
        hit_target=a.hit_target,
        recovery_target_s=a.recovery_target_s,
        p99_slack_ms=a.p99_slack_ms,
    )


# --- Managed servers ------------------------------------------------------------------------
@dataclass
class Harness:
    opts: Options
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faults-")))
    pg_dir: Path | None = None
    pg_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    redis_proc: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    pg_started: bool = False
    cleaned: bool = False
    # Filled by setup(): what the app's own settings say, so the checks use its real values.
    info: dict[str, Any] = field(default_factory=dict)
    secrets_env: dict[str, str] = field(default_factory=dict)

    # Postgres: its own cluster, so stopping it cannot touch the shared server on 5432.
    def _as_postgres(self, cmd: list[str]) -> list[str]:
        # initdb and pg_ctl refuse to run as root.
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def pg_ctl(self, *args: str, timeout: float = 60) -> str:
        assert self.pg_dir is not None
        return sh(
            self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir / "data"), *args]),
            timeout=timeout,
        )

    def init_postgres(self) -> None:
        self.pg_dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.pg_dir, pw.pw_uid, pw.pw_gid)
        sh(
            self._as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.pg_dir / "data"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            )
        )
        self.start_postgres()

    def start_postgres(self) -> None:
        assert self.pg_dir is not None
        options = (
            f"-p {self.pg_port} -k /tmp -c listen_addresses=127.0.0.1 "
            # Throwaway data: no fsync, so seeding and writes cost CPU, not the disk.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self.pg_ctl("-o", options, "-l", str(self.pg_dir / "postgres.log"), "-w", "start")
        self.pg_started = True

    def postmaster_pid(self) -> int | None:
        if self.pg_dir is None:
            return None
        try:
            return int((self.pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop_postgres(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")

    def psql(self, sql: str, db: str = DB_NAME) -> str:
        return sh(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-qtA",
                "-c",
                sql,
            ]
        )

    @property
    def dsn(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/{DB_NAME}"

    # Redis
    def redis_cmd(self) -> list[str]:
        return redis_server_cmd(self.redis_port, self.tmp)

    def start_redis(self) -> None:
        self.redis_proc = subprocess.Popen(self.redis_cmd(), cwd=self.tmp, start_new_session=True)
        if not wait_port(self.redis_port, 10):
            raise RuntimeError("redis-server did not start")

    def signal_redis(self, sig: signal.Signals) -> None:
        assert self.redis_proc is not None
        os.kill(self.redis_proc.pid, sig)
        if sig == signal.SIGKILL:
            self.redis_proc.wait(timeout=10)

    def start_monitor(self, path: Path) -> tuple[subprocess.Popen[bytes], float]:
        """`redis-cli MONITOR` on the test's own redis-server, into `path`; with the offset
        from time.monotonic() (the load generator's clock) to Redis' timestamps (wall clock).
        Returns once MONITOR has answered OK, so nothing after this call is missed."""
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "monitor"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while not path.read_bytes().startswith(b"OK"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-cli monitor failed: {path.read_text()[-500:]!r}")
            time.sleep(0.01)
        return proc, time.time() - time.monotonic()

    def stop_redis(self) -> None:
        if self.redis_proc is not None:
            stop_process(self.redis_proc)
            self.redis_proc = None

    # The app
    def app_env(self, *, config: str, redis: bool, prefix: str) -> dict[str, str]:
        env = environ_without_service_settings()
        env.update(self.secrets_env)
        env.update(
            DJANGO_SETTINGS_MODULE="connectors_site.settings",
            DJANGO_DEBUG="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DATABASE_URL=self.dsn,
            LOG_LEVEL="warning",
            CACHE_KEY_PREFIX=prefix,
            PYTHONUNBUFFERED="1",
        )
        # The service-role token is exempt anyway; off also covers a throttle that changes.
        for rate in ("USER", "IP", "OAUTH_USER", "OAUTH_IP"):
            env[f"THROTTLE_{rate}_RATE"] = "off"
        if redis:
            env["REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        if config == "naive":
            env.update(NAIVE_ENV)
        return env

    def start_app(self, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"gunicorn-{name}.log"
        cmd = [
            str(Path(PY).parent / "gunicorn"),
            "connectors_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.http_port}",
            "--workers",
            str(self.opts.workers),
            "--worker-class",
            "sync",
            "--preload",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
        ]
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=log_file, stderr=log_file, start_new_session=True
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
            if wait_port(self.http_port, 0.1):
                break
        else:
            raise RuntimeError("gunicorn did not listen within 30 s")
        # Every worker imports nothing more on first request (--preload), but wait for /healthz.
        for _ in range(self.opts.workers * 4):
            with contextlib.suppress(OSError):
                import urllib.request

                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2)
        return proc

    def stop_app(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    def manage(self, args: list[str], env: dict[str, str], timeout: float = 300) -> str:
        return sh([PY, "manage.py", *args], env=env, timeout=timeout)

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc, grace=5)
        with contextlib.suppress(Exception):
            self.stop_redis()
        if self.pg_started and self.pg_dir is not None:
            try:
                self.pg_ctl("-m", "immediate", "-w", "stop", timeout=30)
            except Exception:
                # pg_ctl failed (already stopped, or stuck): the postmaster we started is in
                # its pid file; kill exactly that process.
                pid = self.postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        for path in (self.tmp, self.pg_dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        log("cleaned up: servers stopped, temp dirs removed")


def make_secrets() -> dict[str, str]:
    # Fresh each run, so nothing secret-looking lives in the repository.
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


SETUP_SCRIPT = """
import io, json
from django.conf import settings
from django.core.management import call_command
from connectors.cache import platform_status_key
from connectors.management.commands.seed_demo import demo_user_id
from connectors.providers import PROVIDERS
out = io.StringIO()
call_command("issue_token", "--service-role", "--ttl", "7200", stdout=out)
print("FAULTS_JSON " + json.dumps({
    "token": out.getvalue().strip(),
    "providers": list(PROVIDERS),
    "users": [demo_user_id(i) for i in range(%d)],
    "grace": settings.CACHE_OUTBOX_GRACE_SECONDS,
    "sweep": settings.CACHE_OUTBOX_SWEEP_SECONDS,
    "cooldown": settings.CACHE_BREAKER_COOLDOWN_SECONDS,
    "threshold": settings.CACHE_BREAKER_THRESHOLD,
    "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
    "connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
    "stale_if_error": settings.CACHE_STALE_IF_ERROR_SECONDS,
    "status_key": [demo_user_id(0), platform_status_key(demo_user_id(0))],
}))
"""


def setup(h: Harness) -> None:
    started = time.monotonic()
    h.secrets_env = make_secrets()
    h.init_postgres()
    h.psql(f'CREATE DATABASE "{DB_NAME}"', db="postgres")
    env = h.app_env(config="service", redis=False, prefix="faults-setup")
    h.manage(["migrate", "--noinput", "-v", "0"], env)
    seeded = h.manage(["seed_demo", "--users", str(h.opts.users)], env).strip().splitlines()
    h.psql("VACUUM ANALYZE")
    out = h.manage(["shell", "-v", "0", "-c", SETUP_SCRIPT % h.opts.users], env)
    line = next(x for x in out.splitlines() if x.startswith("FAULTS_JSON "))
    h.info = json.loads(line[len("FAULTS_JSON ") :])
    rows = h.psql("select count(*) from connectors_platformconnection").strip()
    log(
        f"postgres on :{h.pg_port}, redis on :{h.redis_port}, gunicorn on :{h.http_port}; "
        f"{seeded[-1] if seeded else 'seeded'} ({rows} rows); setup {time.monotonic() - started:.0f} s"
    )


# --- What Redis held -------------------------------------------------------------------------
MONITOR_LINE = re.compile(r"^(\d+\.\d+) \[\d+ [^\]]*\] (.*)$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Commands that leave a key in place ("SET" also from inside the service's Lua scripts, which
# MONITOR lists as "lua") and commands that remove it. Anything else that names a status key
# and is not a read is counted as unknown (reported; the analysis then fails loudly).
KEY_READS = {"GET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "EVALSHA", "EVAL", "EVALSHA_RO"}
KEY_SETS = {"SET", "SETEX", "PSETEX", "SETNX", "GETSET"}
KEY_DELETES = {"DEL", "UNLINK", "GETDEL"}


@dataclass
class KeyTimeline:
    """When each user's status entry was in Redis, from the MONITOR stream of scenario c.

    Exact where the write bookkeeping can only guess: a write's DEL may come from a request
    that failed after all, from the outbox sweeper once the database is back, or from a write
    the load generator could not read back. MONITOR shows every command Redis executed with
    its time, including those run inside Lua scripts (the service fills entries from one).
    """

    changes: dict[int, list[tuple[float, bool]]]  # user -> (monotonic time, present after)
    sets: int = 0
    deletes: int = 0
    unknown: Counter[str] = field(default_factory=Counter)

    @classmethod
    def parse(
        cls,
        path: Path,
        *,
        prefix: str,
        status_key: str,
        users: list[str],
        clock_offset: float,
    ) -> KeyTimeline:
        before, after = status_key.split("{user}")
        index = {u: i for i, u in enumerate(users)}
        # django-redis stores "<prefix>:<version>:<key>"; the lease key has a suffix, so a
        # full match on the value key leaves it out.
        key_re = re.compile(
            rf"{re.escape(prefix)}:[^:]*:{re.escape(before)}({UUIDS.pattern}){re.escape(after)}"
        )
        timeline = cls(defaultdict(list))
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = MONITOR_LINE.match(line)
                if not m:
                    continue
                words = QUOTED.findall(m.group(2))
                if not words:
                    continue
                command = words[0].upper()
                if command in ("FLUSHDB", "FLUSHALL"):
                    t = float(m.group(1)) - clock_offset
                    for user in timeline.changes:
                        timeline.changes[user].append((t, False))
                    continue
                named = [
                    index[k.group(1)]
                    for w in words[1:]
                    if (k := key_re.fullmatch(w)) and k.group(1) in index
                ]
                if not named or command in KEY_READS:
                    continue
                t = float(m.group(1)) - clock_offset
                if command in KEY_SETS:
                    options = {w.upper() for w in words[3:]}
                    if "XX" in options:  # only overwrites: presence unchanged
                        continue
                    timeline.sets += 1
                    timeline.changes[named[0]].append((t, True))
                elif command in KEY_DELETES:
                    timeline.deletes += 1
                    for user in named:
                        timeline.changes[user].append((t, False))
                else:
                    timeline.unknown[command] += 1
        return timeline

    def present_throughout(self, user: int, start: float, end: float) -> bool:
        """The user's entry was in Redis from `start` to `end` (entries outlive a run: their
        TTL is minutes), so a read in between had it to answer from."""
        changes = self.changes.get(user, [])
        i = bisect.bisect_right(changes, (start, True))
        if i == 0 or not changes[i - 1][1]:
            return False
        return all(present for t, present in changes[i:] if t <= end)

    def present_during(self, user: int, start: float, end: float) -> bool:
        """The entry was in Redis at some moment between `start` and `end`."""
        changes = self.changes.get(user, [])
        i = bisect.bisect_right(changes, (start, True))
        if i > 0 and changes[i - 1][1]:
            return True
        return any(present for t, present in changes[i:] if t <= end)


# --- One run --------------------------------------------------------------------------------
@dataclass
class Run:
    scenario: str  # "baseline" | "a" | "b" | "c"
    config: str  # "db-only" | "service" | "naive"
    t0: float
    end: float
    fault_start: float | None
    recovered: float | None
    data: dict[str, Any]
    log_text: str
    warm_note: str = ""
    other_cpu: float = 0.0
    # Scenario c: per user, when their status entry was in Redis (see KeyTimeline).
    keys: KeyTimeline | None = None

    @property
    def title(self) -> str:
        return "DB-only baseline" if self.scenario == "baseline" else SCENARIOS[self.scenario]


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_one(h: Harness, scenario: str, config: str) -> Run:
    o = h.opts
    name = f"{scenario}-{config}"
    redis = scenario != "baseline"
    seconds = o.baseline if scenario == "baseline" else o.duration
    prefix = f"faults-{os.getpid()}-{name}"
    monitor: subprocess.Popen[bytes] | None = None
    monitor_path, clock_offset = h.tmp / f"monitor-{name}.log", 0.0
    if redis:
        h.start_redis()
    if scenario == "c":
        # Redis stays up in scenario c: record every command it executes from before the
        # warm-up on, so that the analysis knows which users' entries it held at any moment.
        monitor, clock_offset = h.start_monitor(monitor_path)
    # Rows the naive config never replays must not leak into the next run.
    h.psql("TRUNCATE connectors_pendinginvalidation")
    env = h.app_env(config=config, redis=redis, prefix=prefix)
    # The service's own warm_cache, two processes over halves of the users, started before
    # gunicorn so that both boot at once: the run budget is tight on 2 cores.
    warmers = []
    if redis:
        for half in (h.info["users"][0::2], h.info["users"][1::2]):
            args = [a for u in half for a in ("--user", u)]
            warmers.append(
                subprocess.Popen(
                    [PY, "manage.py", "warm_cache", *args],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            )
    h.procs.extend(warmers)
    app = h.start_app(env, name)
    warm_note = ""
    try:
        warm_started = time.monotonic()
        for proc in warmers:
            out, _ = proc.communicate(timeout=300)
            h.procs.remove(proc)
            if proc.returncode != 0:
                raise RuntimeError(f"warm_cache failed:\n{out[-2000:]}")
        if warmers:
            warm_note = f"{len(h.info['users']):,} users warmed by 2 x warm_cache (+{time.monotonic() - warm_started:.1f} s after gunicorn was up)"
        cfg = {
            "port": h.http_port,
            "token": h.info["token"],
            "users": h.info["users"],
            "providers": h.info["providers"],
            "dsn": h.dsn,
            "rate": o.rate,
            "seconds": seconds,
            "threads": o.threads,
            "zipf_s": o.zipf_s,
            "write_pct": o.write_pct,
            "reset_share": o.reset_share,
            "seed": 1000 + len(name),
        }
        cfg_path, out_path = h.tmp / f"load-{name}.json", h.tmp / f"out-{name}.json"
        cfg_path.write_text(json.dumps(cfg))
        loader = subprocess.Popen(
            [PY, str(BENCH / "loadgen.py"), str(cfg_path), str(out_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        h.procs.append(loader)
        assert loader.stdout is not None
        first = loader.stdout.readline()
        if not first.startswith("START "):
            raise RuntimeError(f"load generator failed to start: {first!r}")
        t0 = float(first.split()[1])
        watch = CpuWatch(h.postmaster_pid)
        watch.start()
        fault_start = recovered = None
        if scenario in ("a", "b"):
            sleep_until(t0 + o.fault_at)
            fault_start = time.monotonic()
            h.signal_redis(signal.SIGKILL if scenario == "a" else signal.SIGSTOP)
            log(f"  {name}: redis {'killed' if scenario == 'a' else 'paused'}")
            sleep_until(t0 + o.recover_at)
            if scenario == "a":
                h.start_redis()  # same port, empty: no persistence
            else:
                h.signal_redis(signal.SIGCONT)
            recovered = time.monotonic()
            log(f"  {name}: redis {'restarted (empty)' if scenario == 'a' else 'resumed'}")
        elif scenario == "c":
            sleep_until(t0 + o.fault_at)
            fault_start = time.monotonic()
            h.stop_postgres("fast")
            log(f"  {name}: postgres stopped")
            sleep_until(t0 + o.fault_at + o.pg_down)
            h.start_postgres()  # pg_ctl -w: returns once it accepts connections
            recovered = time.monotonic()
            log(f"  {name}: postgres started")
        loader.wait(timeout=seconds + 90)
        other_cpu = watch.stop()
        h.procs.remove(loader)
        if loader.returncode != 0:
            raise RuntimeError(f"load generator exited with {loader.returncode}")
        data = json.loads(out_path.read_text())
    finally:
        h.stop_app(app)
        if redis:
            h.stop_redis()
        if monitor is not None:
            h.stop_app(monitor)  # normally gone already: redis-cli exits with its server
    log_text = (h.tmp / f"gunicorn-{name}.log").read_text(errors="replace")
    keys = None
    if monitor is not None:
        user_id, status_key = h.info["status_key"]
        keys = KeyTimeline.parse(
            monitor_path,
            prefix=prefix,
            status_key=status_key.replace(user_id, "{user}"),
            users=h.info["users"],
            clock_offset=clock_offset,
        )
    return Run(
        scenario,
        config,
        t0,
        t0 + seconds,
        fault_start,
        recovered,
        data,
        log_text,
        warm_note,
        other_cpu,
        keys,
    )


# --- Analysis -------------------------------------------------------------------------------
Read = tuple[int, float, float, int, int, int, "list[int] | None"]


@dataclass
class PhaseStats:
    name: str
    seconds: float
    reads: int = 0
    writes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    skipped: int = 0
    read_p50: float = float("nan")
    read_p99: float = float("nan")
    write_p99: float = float("nan")
    hits: int = 0
    served: int = 0
    stale_api: int = 0
    stale_ext: int = 0
    stale_flag: int = 0
    r503_uncached: int = 0
    r503_cached: int = 0
    w503: int = 0
    r500: int = 0

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.served if self.served else None

    @property
    def non_2xx(self) -> str:
        bad = {s: n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}
        names = {0: "conn-err", -200: "bad-body"}
        return ", ".join(f"{names.get(s, s)}:{n}" for s, n in bad.items()) or "0"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class WriteIndex:
    """Per user, writes sorted by the time from which reads must show them."""

    def __init__(self, items: Iterable[tuple[int, float, list[int]]]) -> None:
        by_user: dict[int, list[tuple[float, list[int]]]] = defaultdict(list)
        for user, visible_from, versions in items:
            by_user[user].append((visible_from, versions))
        self.times: dict[int, list[float]] = {}
        self.versions: dict[int, list[list[int]]] = {}
        for user, rows in by_user.items():
            rows.sort(key=lambda r: r[0])
            self.times[user] = [r[0] for r in rows]
            self.versions[user] = [r[1] for r in rows]

    def latest_before(self, user: int, t: float) -> list[int] | None:
        times = self.times.get(user)
        if not times:
            return None
        i = bisect.bisect_left(times, t) - 1
        return self.versions[user][i] if i >= 0 else None

    def any_between(self, user: int, lo: float, hi: float) -> bool:
        times = self.times.get(user, [])
        i = bisect.bisect_right(times, lo)
        return i < len(times) and times[i] < hi


def older(read: list[int], write: list[int] | None) -> bool:
    return write is not None and any(r < w for r, w in zip(read, write, strict=True))


@dataclass
class Analysis:
    run: Run
    phases: list[PhaseStats]
    seconds_to_target: float | None
    buckets: list[tuple[int, int, float | None]]
    breaker_opens: int
    undelivered_warnings: int
    errors_logged: int
    first_traceback: str
    # Hit ratio in the first 10 s after recovery over reads of users already read since the
    # recovery: without the misses an empty cache cannot avoid, what is left is the service's.
    repeat_hit_ratio: float | None
    messages: Counter[str]
    # MONITOR self-check: (hits whose entry the key timeline shows present, all hits).
    key_check: tuple[int, int] | None = None


# Django's "<time> LEVEL logger message" and gunicorn's "[time] [pid] [LEVEL] message".
LOG_LINE = re.compile(r"((?:WARNING|ERROR|CRITICAL) \S+ .*|\[(?:WARNING|ERROR|CRITICAL)\] .*)$")
UUIDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def analyse(run: Run, opts: Options, info: dict[str, Any]) -> Analysis:
    d = run.data
    reads: list[Read] = [tuple(r) for r in d["reads"]]  # type: ignore[misc]
    writes = d["writes"]
    ext = d["external"]
    # The promise (README, "Consistency guarantees"): a read that starts after a write returned
    # shows that write or a later one. API writes are checked from the moment they returned.
    api_index = WriteIndex((u, end, v) for u, _k, _s, end, st, v in writes if st == 200 and v)
    # Writes from outside the app are only promised "within about grace + interval seconds"
    # (connectors/outbox.py): they are checked from commit + grace + sweep + 1 s of slack.
    allowance = float(info["grace"]) + float(info["sweep"]) + 1.0
    ext_index = WriteIndex((u, end + allowance, v) for u, end, v in ext if v)
    # Writes that may have removed a user's entry, keyed by the earliest moment they could
    # have: an API write from when it was sent (it commits before it returns), an external one
    # from its commit (the sweeper deletes the entry up to `allowance` later: see below).
    may_invalidate = WriteIndex(
        [(u, start, v or []) for u, _k, start, _e, st, v in writes if st in (0, 200)]
        + [(u, end, v or []) for u, end, v in ext]
    )
    last_ok: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for user, _start, end, status, cached, _stale, _v in sorted(reads, key=lambda r: r[2]):
        if status == 200:
            last_ok[user].append((end, cached))

    if run.fault_start is None:
        bounds = [("baseline", run.t0, run.end + 3600)]
    else:
        assert run.recovered is not None
        bounds = [
            ("before", run.t0, run.fault_start),
            ("during", run.fault_start, run.recovered),
            ("after", run.recovered, run.end + 3600),
        ]
    phases = []
    for name, lo, hi in bounds:
        ps = PhaseStats(name, min(hi, run.end) - lo)
        in_phase = [r for r in reads if lo <= r[1] < hi]
        ps.reads = len(in_phase)
        lat = [(r[2] - r[1]) * 1000 for r in in_phase]
        ps.read_p50, ps.read_p99 = pct(lat, 0.5), pct(lat, 0.99)
        for user, start, _end, status, cached, stale, versions in in_phase:
            ps.statuses[status] += 1
            if status == 500:
                ps.r500 += 1
            if status == 200 and versions is not None:
                ps.served += 1
                ps.hits += cached == 1
                ps.stale_flag += stale == 1
                if older(versions, api_index.latest_before(user, start)):
                    ps.stale_api += 1
                elif older(versions, ext_index.latest_before(user, start)):
                    ps.stale_ext += 1
            if status == 503:
                if run.keys is not None:
                    # "Cached user": its entry was in Redis from the moment the request was
                    # sent until its answer (MONITOR), so the service could have served it.
                    was_cached = run.keys.present_throughout(user, start, _end)
                else:
                    # Without a MONITOR stream (Redis scenarios, where any 503 fails anyway):
                    # its last successful read came from Redis and no write since could have
                    # removed the entry, as far as the load generator knows.
                    prior = last_ok.get(user, [])
                    i = bisect.bisect_left(prior, (start, -2)) - 1
                    was_cached = (
                        i >= 0
                        and prior[i][1] == 1
                        and not may_invalidate.any_between(user, prior[i][0] - allowance, start)
                    )
                if was_cached:
                    ps.r503_cached += 1
                else:
                    ps.r503_uncached += 1
        in_phase_w = [w for w in writes if lo <= w[2] < hi]
        ps.writes = len(in_phase_w)
        ps.write_p99 = pct([(w[3] - w[2]) * 1000 for w in in_phase_w], 0.99)
        for w in in_phase_w:
            ps.statuses[w[4]] += 1
            ps.w503 += w[4] == 503
        ps.skipped = sum(1 for t in d["skipped"] if lo <= t < hi)
        phases.append(ps)

    # Hit ratio per 1 s bucket from recovery on; the first bucket at or above the target.
    buckets: list[tuple[int, int, float | None]] = []
    seconds_to_target = None
    if run.recovered is not None:
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for _u, start, _e, status, cached, _s, versions in reads:
            if start >= run.recovered and status == 200 and versions is not None:
                counts[int(start - run.recovered)][0] += cached == 1
                counts[int(start - run.recovered)][1] += 1
        reached: list[bool] = []
        for k in range(int(run.end - run.recovered) + 1):
            hits, n = counts.get(k, [0, 0])
            ratio = hits / n if n else None
            buckets.append((k, n, ratio))
            reached.append(n >= 10 and ratio is not None and ratio >= opts.hit_target)
        # Back = the first second that, with the next one, is at or above the target: a single
        # lucky bucket of ~100 reads is noise, not recovery.
        for k in range(len(reached) - 1):
            if reached[k] and reached[k + 1]:
                seconds_to_target = float(k + 1)
                break
    repeat_hits = repeat_n = 0
    if run.recovered is not None:
        seen: set[int] = set()
        for user, start, _e, status, cached, _s, versions in sorted(reads, key=lambda r: r[1]):
            if not run.recovered <= start < run.recovered + 10 or status != 200 or not versions:
                continue
            if user in seen:
                repeat_n += 1
                repeat_hits += cached == 1
            seen.add(user)
    key_check = None
    if run.keys is not None:
        hits = [r for r in reads if r[3] == 200 and r[4] == 1]
        confirmed = sum(run.keys.present_during(r[0], r[1], r[2]) for r in hits)
        key_check = (confirmed, len(hits))
    text = run.log_text
    messages: Counter[str] = Counter()
    for line in text.splitlines():
        m = LOG_LINE.search(line)
        if m:
            messages[NUMBERS.sub("N", UUIDS.sub("<uuid>", m.group(1)))[:160]] += 1
    tb = text.find("Traceback")
    return Analysis(
        run=run,
        phases=phases,
        seconds_to_target=seconds_to_target,
        buckets=buckets,
        breaker_opens=text.count("-> open ("),
        undelivered_warnings=text.count("Undelivered invalidations pending"),
        errors_logged=sum(1 for line in text.splitlines() if " ERROR " in line),
        first_traceback=text[tb : tb + 2500] if tb >= 0 else "",
        repeat_hit_ratio=repeat_hits / repeat_n if repeat_n else None,
        messages=messages,
        key_check=key_check,
    )


# --- Targets and report ----------------------------------------------------------------------
@dataclass
class Verdict:
    r500: int
    r503_redis: int
    r503_cached_pg: int
    r503_pg_outside: int
    stale_after: int
    stale_during: int
    p99_delta: float
    seconds_to_target: float | None
    checks: list[tuple[str, str, bool]]


def verdict(analyses: list[Analysis], baseline: Analysis | None, opts: Options) -> Verdict:
    fault_runs = [a for a in analyses if a.run.scenario != "baseline"]

    def phase(a: Analysis, name: str) -> PhaseStats:
        return next(p for p in a.phases if p.name == name)

    r500 = sum(p.statuses[500] for a in fault_runs for p in a.phases)
    redis_runs = [a for a in fault_runs if a.run.scenario in ("a", "b")]
    pg_runs = [a for a in fault_runs if a.run.scenario == "c"]
    r503_redis = sum(p.statuses[503] for a in redis_runs for p in a.phases)
    r503_cached_pg = sum(phase(a, "during").r503_cached for a in pg_runs)
    # The MONITOR timeline must agree with every cache hit (each found its entry in Redis) and
    # know every command that touched an entry; otherwise its verdict on 503s is not trusted.
    key_checks = [a.key_check for a in pg_runs if a.key_check is not None]
    keys_ok = all(
        a.key_check is not None
        and a.key_check[0] == a.key_check[1]
        and a.run.keys is not None
        and not a.run.keys.unknown
        for a in pg_runs
    )
    keys_note = (
        "; MONITOR confirmed " + ", ".join(f"{ok:,}/{n:,}" for ok, n in key_checks) + " hits"
    )
    # Reads answered 503 outside the Postgres outage (writes cannot help failing during it).
    r503_pg_outside = sum(
        p.r503_cached + p.r503_uncached for a in pg_runs for p in a.phases if p.name != "during"
    )
    stale_after = sum(phase(a, "after").stale_api + phase(a, "after").stale_ext for a in fault_runs)
    stale_during = sum(
        phase(a, "during").stale_api + phase(a, "during").stale_ext for a in fault_runs
    )
    base_p99 = baseline.phases[0].read_p99 if baseline else float("nan")
    outage_p99 = max((phase(a, "during").read_p99 for a in redis_runs), default=float("nan"))
    p99_delta = outage_p99 - base_p99
    times = [a.seconds_to_target for a in fault_runs]
    worst = None if any(t is None for t in times) or not times else max(t for t in times if t)
    checks = [
        ("0 responses with status 500", f"{r500}", r500 == 0),
        (
            "503 only for uncached users while Postgres is down, none in a Redis-only outage",
            f"{r503_cached_pg} for cached users, {r503_pg_outside} outside the outage, "
            f"{r503_redis} in Redis scenarios" + (keys_note if pg_runs else ""),
            r503_cached_pg == 0
            and r503_redis == 0
            and r503_pg_outside == 0
            and (keys_ok or not pg_runs),
        ),
        (
            f"p99 during a Redis outage within {opts.p99_slack_ms:g} ms of DB-only p99",
            f"{outage_p99:.1f} - {base_p99:.1f} = {p99_delta:+.1f} ms",
            p99_delta <= opts.p99_slack_ms,
        ),
        (
            "0 stale reads after recovery",
            f"{stale_after} (during: {stale_during})",
            stale_after == 0,
        ),
        (
            f"hit ratio back above {opts.hit_target:.0%} within {opts.recovery_target_s:g} s",
            "never" if worst is None else f"{worst:g} s (worst scenario)",
            worst is not None and worst <= opts.recovery_target_s,
        ),
    ]
    return Verdict(
        r500,
        r503_redis,
        r503_cached_pg,
        r503_pg_outside,
        stale_after,
        stale_during,
        p99_delta,
        worst,
        checks,
    )


def fmt(x: float | None, spec: str = ".1f") -> str:
    if x is None or x != x:  # None or NaN
        return "n/a"
    return format(x, spec)


def phase_table(analyses: list[Analysis]) -> str:
    lines = [
        "| scenario | config | phase | s | reads | writes | non-2xx (status:n) | skipped | "
        "read p50 ms | read p99 ms | write p99 ms | hit ratio | stale reads API / ext | "
        "503 reads uncached / cached | 503 writes |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in analyses:
        for p in a.phases:
            lines.append(
                f"| {a.run.scenario}: {a.run.title} | {a.run.config} | {p.name} | {p.seconds:.1f} | "
                f"{p.reads:,} | {p.writes:,} | {p.non_2xx} | {p.skipped:,} | {fmt(p.read_p50)} | "
                f"{fmt(p.read_p99)} | {fmt(p.write_p99)} | "
                f"{fmt(None if p.hit_ratio is None else p.hit_ratio * 100)}% | "
                f"{p.stale_api} / {p.stale_ext} | {p.r503_uncached} / {p.r503_cached} | {p.w503} |"
            )
    return "\n".join(lines)


def run_table(analyses: list[Analysis], opts: Options) -> str:
    lines = [
        f"| scenario | config | s to hit ratio {opts.hit_target:.0%} | hit ratio % per second after "
        "recovery (first 12 s) | same, repeat reads only, first 10 s | external writes (SQL) | "
        "404 no-op writes | breaker opened (log) | undelivered warnings | ERROR log lines | "
        "other CPU | warm-up |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in analyses:
        d = a.run.data
        per_second = " ".join(
            "-" if r is None else f"{r * 100:.0f}" for _k, _n, r in a.buckets[:12]
        )
        repeat = "n/a" if a.repeat_hit_ratio is None else f"{a.repeat_hit_ratio * 100:.1f}%"
        lines.append(
            f"| {a.run.scenario} | {a.run.config} | {fmt(a.seconds_to_target, 'g')} | "
            f"{per_second or 'n/a'} | {repeat} | "
            f"{len(d['external']):,} (+{d['external_errors']} failed) | {d['noop_writes']:,} | "
            f"{a.breaker_opens} | {a.undelivered_warnings} | {a.errors_logged} | "
            f"{a.run.other_cpu:.0f}% | {a.run.warm_note or 'n/a'} |"
        )
    return "\n".join(lines)


def summary_lines(v: Verdict, prefix: str = "") -> list[str]:
    return [
        f"{prefix}500s during faults: {v.r500}",
        f"{prefix}503s during redis-only outages: {v.r503_redis}",
        f"{prefix}stale reads after recovery: {v.stale_after}",
        f"{prefix}outage p99 minus db-only p99 ms: {fmt(v.p99_delta)}",
        f"{prefix}seconds to hit ratio 90% after recovery: "
        + ("never" if v.seconds_to_target is None else f"{v.seconds_to_target:g}"),
    ]


def versions_line(h: Harness) -> str:
    from importlib import metadata

    parts = [f"Python {platform.python_version()}"]
    for pkg in ("Django", "django-redis", "redis", "psycopg", "gunicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{pkg} {metadata.version(pkg)}")
    with contextlib.suppress(Exception):
        parts.append("Postgres " + h.psql("show server_version").strip())
    with contextlib.suppress(Exception):
        parts.append(sh(["redis-server", "--version"]).split()[2].replace("v=", "redis-server "))
    return ", ".join(parts)


def report(
    h: Harness,
    analyses: list[Analysis],
    verdicts: dict[str, Verdict],
    elapsed: float,
) -> str:
    o, info = h.opts, h.info
    commit, dirty = git_commit()
    today = dt.date.today().isoformat()
    baseline = next((a for a in analyses if a.run.scenario == "baseline"), None)

    def check(ok: bool) -> str:
        return "PASS" if ok else "**FAIL**"

    targets = [
        "| target | service | | naive | |",
        "|---|---|---|---|---|",
    ]
    names = [c[0] for c in next(iter(verdicts.values())).checks] if verdicts else []
    for i, name in enumerate(names):
        cells = []
        for config in ("service", "naive"):
            v = verdicts.get(config)
            cells.append(f"{v.checks[i][1]} | {check(v.checks[i][2])}" if v else "not run | ")
        targets.append(f"| {name} | {' | '.join(cells)} |")
    logs = []
    for a in analyses:
        if a.messages:
            logs.append(f"- {a.run.scenario}/{a.run.config}:")
            logs += [f"  - {n:,} x `{m}`" for m, n in a.messages.most_common(5)]
    traces = [
        f"### {a.run.scenario}/{a.run.config}: first traceback in the gunicorn log\n\n```\n"
        f"{a.first_traceback}\n```"
        for a in analyses
        if a.first_traceback
    ]
    allowance = float(info["grace"]) + float(info["sweep"]) + 1.0
    base_line = (
        f"DB-only baseline ({o.baseline:g} s, no REDIS_URL): read p50 {fmt(baseline.phases[0].read_p50)} ms, "
        f"p99 {fmt(baseline.phases[0].read_p99)} ms."
        if baseline
        else "DB-only baseline: not run."
    )
    summary = []
    for config, prefix in (("service", ""), ("naive", "naive ")):
        if config in verdicts:
            summary += summary_lines(verdicts[config], prefix)
    md = f"""# `make faults` results: {today}, commit {commit}{" (working tree with uncommitted changes)" if dirty else ""}

The status service under load while its Redis or its Postgres fails (bench/faults.py, bench/loadgen.py).
{versions_line(h)}; {os.cpu_count()} CPUs. Whole run: {elapsed:.0f} s.

**Phase timings used:** each run {o.duration:g} s; Redis fault at {o.fault_at:g} s, recovery at
{o.recover_at:g} s; Postgres stopped at {o.fault_at:g} s for {o.pg_down:g} s (recovered at
{o.fault_at + o.pg_down:g} s). DB-only baseline {o.baseline:g} s. Phases: *before* = start .. fault,
*during* = fault .. recovery (Redis accepting connections again / `pg_ctl start -w` returned), *after*
= recovery .. end; a request belongs to the phase in which it started.

**Load:** one process (bench/loadgen.py), open loop at {o.rate:g} operations/s, {o.threads} threads,
{o.users:,} seeded users drawn by Zipf (s={o.zipf_s:g}), service-role token (throttles also off).
{o.write_pct:g}% of operations are API writes ({(1 - o.reset_share) * 100:.0f}% DELETE
/api/connectors/<provider>/<user>, {o.reset_share * 100:.0f}% POST /api/connectors/reset/<user>); each
successful one schedules a direct SQL UPDATE re-activating that user's rows 0.5-2 s later (another
service writing the shared table: the app learns of it only through the outbox trigger's row and its
sweeper). Server: gunicorn, {o.workers} sync workers, DEBUG off, LOG_LEVEL=warning, a fresh
redis-server and a fresh key prefix per run, the cache warmed by `manage.py warm_cache` before the
load starts. An operation not sent within 1 s of its schedule (all threads stuck) is *skipped*.

**Configurations:** *service* = the defaults (breaker threshold {info["threshold"]}, cool-down
{info["cooldown"]:g} s, outbox sweep every {info["sweep"]:g} s for rows older than {info["grace"]:g} s,
Redis socket/connect timeout {info["socket_timeout"]:g}/{info["connect_timeout"]:g} s, stale-if-error
{info["stale_if_error"]} s). *naive* = {", ".join(f"{k}={v}" for k, v in NAIVE_ENV.items())}: django-redis'
IGNORE_EXCEPTIONS with redis-py-like timeouts, no breaker, no replay.

**Stale reads:** a 200 read that started after a write to that user returned (API writes: from
the moment the response arrived; the per-provider versions were read back from Postgres under a
per-user lock, so they are exactly what the write left) but shows some provider at a lower
version. External SQL writes are promised only within about grace + sweep interval: they count
from commit + {allowance:g} s. *503 reads cached* = a 503 for a user whose status entry was in
Redis from the moment the request was sent until its answer, by the run's `redis-cli MONITOR`
stream (scenario c; checked against every cache hit of the run, each of which must find its entry
present); in the Redis scenarios, a user whose last successful read was a cache hit with no
recorded write since.

**Hit ratio after recovery:** the share of 200 reads answered from Redis (`cached`), per 1 s
bucket from the recovery; "s to hit ratio" = the end of the first bucket that, with the next one,
is at or above {o.hit_target:.0%}. In scenario a Redis comes back empty, so this is mostly the
time the load needs to refill it; "repeat reads only" leaves out each user's first read after
the recovery (a miss no cache configuration can avoid) and so shows what the service itself loses.

**Rate:** {o.rate:g} operations/s keeps the DB-only path below saturation on this machine (at 200/s the
DB-only p50 was ~75 ms, i.e. queueing), so the outage-vs-DB-only p99 comparison measures the
service, not a queue. *other CPU* = CPU used during the run by processes that are not this
benchmark's, in % of one CPU (the machine may be shared).

{base_line}

## Per scenario, configuration and phase

{phase_table(analyses)}

## Recovery per run

{run_table(analyses, o)}

Warning and error lines in each run's gunicorn log (most frequent first, UUIDs and numbers
folded; LOG_LEVEL=warning):

{chr(10).join(logs) or "none"}

## Targets

{chr(10).join(targets)}

## Summary

```
{chr(10).join(summary)}
```
{chr(10).join(traces)}
"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"faults-{today}-{commit}"
    (RESULTS / f"{stem}.md").write_text(md)
    (RESULTS / "faults-latest.md").write_text(md)
    log(f"wrote bench/results/{stem}.md and bench/results/faults-latest.md")
    return md


# --- Main -----------------------------------------------------------------------------------
def ensure_tools() -> None:
    missing = [
        tool
        for tool in (
            "redis-server",
            "redis-cli",
            "psql",
            str(PG_BIN / "initdb"),
            str(PG_BIN / "pg_ctl"),
        )
        if not shutil.which(tool)
    ]
    if missing:
        sys.exit(f"make faults needs {', '.join(missing)} (set FAULTS_PG_BIN for other paths)")
    if not (Path(PY).parent / "gunicorn").exists():
        sys.exit("make faults needs gunicorn: pip install -e '.[dev,bench]'")


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    ensure_tools()
    started = time.monotonic()
    h = Harness(opts)
    atexit.register(h.cleanup)

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    log(
        f"phase timings: runs {opts.duration:g} s, Redis fault at {opts.fault_at:g} s and recovery "
        f"at {opts.recover_at:g} s, Postgres down {opts.fault_at:g}-{opts.fault_at + opts.pg_down:g} s, "
        f"baseline {opts.baseline:g} s; {opts.rate:g} ops/s, {opts.workers} gunicorn workers"
    )
    try:
        setup(h)
        analyses: list[Analysis] = []
        plan = [("baseline", "db-only")] + [(s, c) for s in opts.scenarios for c in opts.configs]
        for scenario, config in plan:
            log(f"run {scenario}/{config}")
            run = run_one(h, scenario, config)
            a = analyse(run, opts, h.info)
            analyses.append(a)
            for p in a.phases:
                log(
                    f"  {p.name}: {p.reads} reads, p99 {fmt(p.read_p99)} ms, non-2xx {p.non_2xx}, "
                    f"hit {fmt(None if p.hit_ratio is None else p.hit_ratio * 100)}%, "
                    f"stale {p.stale_api}/{p.stale_ext}"
                )
        baseline = next((a for a in analyses if a.run.scenario == "baseline"), None)
        verdicts = {
            config: verdict([a for a in analyses if a.run.config == config], baseline, opts)
            for config in opts.configs
        }
        md = report(h, analyses, verdicts, time.monotonic() - started)
    finally:
        h.cleanup()
    print()
    print(md[md.index("## Per scenario") : md.index("## Summary")].strip())
    print()
    for config, prefix in (("service", ""), ("naive", "naive ")):
        if config in verdicts:
            for line in summary_lines(verdicts[config], prefix):
                print(line)
    service = verdicts.get("service")
    return 0 if service is None or all(ok for _n, _m, ok in service.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
