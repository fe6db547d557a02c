"""Where results go, and what every report says about the set-up (versions, commit, machine).

BENCH_RESULTS_DIR sends the reports elsewhere (a smoke run, say); the README's block is then left
alone, since it links to bench/results/.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from bench.harness.env import BENCH, ROOT
from tests.support.procs import psql, sh

DEFAULT_RESULTS = BENCH / "results"
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or DEFAULT_RESULTS).resolve()
# Only the default place: the README's block links to bench/results/.
UPDATES_README = DEFAULT_RESULTS.resolve() == RESULTS
PACKAGES = (
    "Django",
    "djangorestframework",
    "django-redis",
    "redis",
    "hiredis",
    "psycopg",
    "gunicorn",
    "granian",
)
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def git_commit() -> tuple[str, bool]:
    """The short commit, and whether tracked files differ from it (results files are new,
    untracked files, so they do not count)."""
    commit = sh(["git", "rev-parse", "--short", "HEAD"], check=False).strip() or "nogit"
    dirty = bool(sh(["git", "status", "--porcelain", "--untracked-files=no"], check=False).strip())
    return commit, dirty


def versions(*, postgres_port: int = 5432, wrk: bool = False) -> dict[str, str]:
    """Python, the packages that serve a request, the servers (and wrk, if it was used)."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    with contextlib.suppress(Exception):
        out["postgres"] = psql("show server_version", port=postgres_port).strip()
    with contextlib.suppress(Exception):
        out["redis-server"] = sh(["redis-server", "--version"]).split()[2].removeprefix("v=")
    if wrk:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        out["wrk"] = (done.stdout or done.stderr).splitlines()[0].strip()
    return out


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} logical CPUs{mem}, {platform.system()} {platform.release()}"


def shown(path: Path) -> str:
    """`path` as a report names it: relative to the repository when it is inside it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


def write(stem: str, text: str, *, latest: str) -> Path:
    """RESULTS/<stem>.md and RESULTS/<latest>, both `text`; the first one's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stem}.md"
    out.write_text(text)
    (RESULTS / latest).write_text(text)
    return out


def copy_latest(path: Path, latest: str) -> None:
    shutil.copyfile(path, RESULTS / latest)


def update_readme(block: str) -> None:
    """Put `block` between the README's bench markers, so the README shows what the last
    `make bench` measured rather than a hand-copied figure."""
    if not UPDATES_README:
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    readme.write_text(f"{head}{README_START}\n{block}{README_END}{rest.split(README_END, 1)[1]}")
