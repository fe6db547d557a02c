"""A real production server for tests: `manage.py serve` (what `make serve` runs) in a
subprocess, with DJANGO_DEBUG=0, its own Postgres database, a Redis key prefix of its own and a
free port. Everything it starts, it stops."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "DJANGO_SECRET_KEY": "prod-test-" + "k" * 40 + "Q7#x",
    "SUPABASE_JWT_SECRET": "test-jwt-secret-" + "y" * 40,
    "TOKEN_ENCRYPTION_KEY": "l9tpR1P3hU6mZSXWbrmQOQxfSzOg0tx2dq8EHUaSShk=",
    "METRICS_TOKEN": "metrics-" + "m" * 40,
}
# The variables a test run may carry that must not leak into the server's environment.
_DROP = ("DJANGO_", "DATABASE_", "REDIS_", "UPSTASH_", "SUPABASE_", "TOKEN_", "CACHE_")


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_KeepRedirects)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, **SECRETS, "DJANGO_DEBUG": "0", **extra}


@contextlib.contextmanager
def throwaway_database(database_url: str) -> Iterator[str]:
    """A new empty database on the same Postgres server; its URL. Dropped afterwards."""
    parts = urlsplit(database_url)
    name = f"connectors_serve_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'UTC'")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Server:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    log_path: Path
    stdout_path: Path
    metrics_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def get(self, path: str, **headers: str) -> tuple[int, Message, bytes]:
        """Status, headers (case-insensitive) and body; redirects are not followed."""
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with _NO_REDIRECTS.open(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def _wait_until_serving(server: Server, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"manage.py serve exited:\n{server.stdout()}\n{server.log()}")
        with contextlib.suppress(OSError):
            status, _, _ = server.get("/healthz")
            if status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"manage.py serve did not answer in time:\n{server.log()}")


@contextlib.contextmanager
def production_server(tmp: Path, **env: str) -> Iterator[Server]:
    """`manage.py serve` with `env` on top of base_env(); stopped with SIGTERM (then SIGKILL)."""
    port = free_port()
    metrics_dir = tmp / "metrics"
    full_env = base_env(
        HOST="127.0.0.1",
        PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        **env,
    )
    log_path, stdout_path = tmp / "serve.err", tmp / "serve.out"
    with open(log_path, "w") as err, open(stdout_path, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group: the workers go with it
        )
    server = Server(
        url=f"http://127.0.0.1:{port}",
        env=full_env,
        process=process,
        log_path=log_path,
        stdout_path=stdout_path,
        metrics_dir=metrics_dir,
    )
    try:
        _wait_until_serving(server, time.monotonic() + 120)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # any worker left behind
