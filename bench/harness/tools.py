"""The programs a harness needs, checked before it starts anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness.env import PY, make_log
from tests.support.procs import psql

log = make_log("bench")


def require(target: str, *programs: str) -> None:
    """Exit with one message naming every program `target` needs and the PATH lacks."""
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        sys.exit(f"make {target} needs {', '.join(missing)} on the PATH.")


def require_gunicorn(target: str) -> None:
    if not (Path(PY).parent / "gunicorn").exists():
        sys.exit(f"make {target} needs gunicorn: pip install -e '.[dev,bench]'")


def require_shared_postgres(target: str) -> None:
    try:
        psql("select 1", timeout=10)
    except Exception as e:
        sys.exit(f"make {target} needs Postgres on 127.0.0.1:5432 (user postgres): {e}")


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    log("wrk not found: installing it with apt-get (Debian package 'wrk')")
    apt = ["apt-get", "install", "-y", "-q", "wrk"]
    if os.geteuid() != 0:
        apt = ["sudo", "-n", *apt]
    proc = subprocess.run(apt, capture_output=True, text=True, check=False)
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit(
            "make bench needs wrk (https://github.com/wg/wrk): `sudo apt-get install wrk` "
            f"failed here:\n{proc.stderr[-2000:]}"
        )
    return wrk
