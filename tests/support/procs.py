"""Throwaway servers on 127.0.0.1 (redis-server, a Postgres cluster) and the process plumbing
around them, for the fault tests and the benchmark harnesses alike.

Every server here is started on a free port and owned by its caller: the shared Postgres on 5432
and the shared Redis on 6379 are never stopped, paused or flushed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(
    cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> str:
    """Run `cmd` in the repository root; its stdout. A failure raises with both outputs."""
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds (every server here is started
    in its own session, so the group is exactly that process and its workers)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_http(url: str, *, proc: subprocess.Popen[Any], seconds: float = 90) -> None:
    """Until `url` answers 200; raises if `proc` (the server) exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s")


# --- redis-server ------------------------------------------------------------------------------
@dataclass
class RedisServer:
    """A redis-server on loopback that keeps nothing on disk, unless `persist` (then every write
    is synced to an append-only file in `workdir`, so a SIGKILL loses nothing and a restart
    comes back "with its data"). `extra` arguments come last and win (`--port 0 --tls-port N`)."""

    port: int = field(default_factory=free_port)
    workdir: Path | None = None  # --dir, and redis.log there (else its output is discarded)
    persist: bool = False
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.persist and self.workdir is None:
            raise ValueError("a persistent redis-server needs a workdir for its append-only file")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=1)

    def command(self) -> list[str]:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.persist:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        if self.workdir is not None:
            cmd += ["--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")]
        return [*cmd, *self.extra]

    def start(self, *, seconds: float = 10) -> None:
        """Start it (again, on the same port and with the same files) and wait until it serves."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server {' '.join(self.command()[1:])} exited")
            if self._serving():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _serving(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                if "--tls-port" in self.extra:
                    return True  # listening is all a plain socket can learn of a TLS port
                # Listening is not enough: it answers -LOADING while it reads its file back.
                sock.sendall(b"PING\r\n")
                return not sock.recv(64).startswith(b"-LOADING")
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


# --- Postgres ----------------------------------------------------------------------------------
def psql(sql: str, *, db: str = "postgres", port: int = 5432, timeout: float = 600) -> str:
    """One statement through psql as user postgres over TCP (trust); unaligned tuples only."""
    return sh(
        [
            *("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db),
            *("-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql),
        ],
        timeout=timeout,
    )


def postgres_bindir() -> Path | None:
    """The newest installed server's bin/ (Debian's layout), or wherever initdb is on the PATH."""
    found = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p.parts[-3])])
    if versions:
        return versions[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresCluster:
    """A throwaway Postgres cluster: initdb in a temp dir, a free port, durability off (the data
    is thrown away, so seeding and writes cost CPU rather than the disk)."""

    bindir: Path
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="connectors-pg-")))
    started: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root.
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def ctl(self, *args: str, timeout: float = 60) -> str:
        pg_ctl = str(self.bindir / "pg_ctl")
        return sh(self._as_postgres([pg_ctl, "-D", str(self.data), *args]), timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust"]
        sh(self._as_postgres([*initdb, "-U", "postgres", "--no-sync"]), timeout=120)
        self.start()

    def start(self) -> None:
        """pg_ctl -w: returns once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self.ctl("-o", options, "-l", str(self.root / "postgres.log"), "-w", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return psql(sql, db=db, port=self.port)

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        """Stop it at once, whatever state it is in, and delete its files."""
        if self.started:
            try:
                self.ctl("-m", "immediate", "-w", "stop", timeout=30)
            except Exception:
                # pg_ctl failed (already stopped, or stuck): the postmaster we started is in
                # its pid file; kill exactly that process.
                pid = self.postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# --- manage.py in a fresh process, on the tests' own database ------------------------------------
def the_tests_database_url() -> str:
    """The database this test run uses (pytest-django's test database), as a DATABASE_URL."""
    from django.db import connection

    db = connection.settings_dict
    auth = quote(db.get("USER") or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}"


def env_for_manage(**extra: str) -> dict[str, str]:
    """This process's environment, on the tests' database, with `extra` on top."""
    return {**os.environ, "DATABASE_URL": the_tests_database_url(), **extra}


def manage(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`manage.py *args` in a fresh process (its own settings, its own threads), to completion."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
