"""Process and shell helpers shared by the benchmark harnesses (run.py, faults.py).

They run as scripts (`python bench/run.py`), so this module is imported from bench/ itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def make_log(tag: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    return log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(
    cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> str:
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds (every child is started in
    its own session, so the group is exactly that child and its workers)."""
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


def git_commit() -> tuple[str, bool]:
    """The short commit, and whether tracked files differ from it (results files are new,
    untracked files, so they do not count)."""
    commit = sh(["git", "rev-parse", "--short", "HEAD"], check=False).strip() or "nogit"
    dirty = bool(sh(["git", "status", "--porcelain", "--untracked-files=no"], check=False).strip())
    return commit, dirty


def redis_server_cmd(port: int, workdir: Path) -> list[str]:
    """A throwaway redis-server on loopback that keeps nothing on disk."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
    ]


# The service's own settings: a harness decides them for the app it serves, whatever the
# caller's shell holds (a stray SUPABASE_URL or THROTTLE_* would change what is measured).
# BENCH_MICRO_* and the harnesses' own knobs pass through.
SERVICE_ENV_PREFIXES = (
    "REDIS_",
    "UPSTASH_",
    "DJANGO_",
    "DATABASE_",
    "CACHE_",
    "THROTTLE_",
    "SUPABASE_",
    "TOKEN_",
    "LOG_LEVEL",
    "BENCH_DB_",
    "BENCH_CEILING",
)


def environ_without_service_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
