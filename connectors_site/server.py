"""The production server's command line: the one place that names the server.

Granian's WSGI interface for now (README, "Production": it keeps connections alive, and gunicorn's
sync worker closes every one); `make bench` is where another server would have to prove itself,
and switching means changing `server_command()` only. Granian's other options can be given
through its own GRANIAN_* environment variables (GRANIAN_LOG_ACCESS_ENABLED=1, ...).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WSGI_APP = "connectors_site.wsgi:application"


def server_command(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    working_dir: Path,
    log_config: Path | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # WSGI requests run on these threads; bounding them also bounds the database
        # connections each worker holds (one per thread). Not --backpressure: granian counts
        # open connections there, and a browser's idle keep-alive connections then starve
        # every new client.
        "--blocking-threads",
        str(threads),
        "--http1-keep-alive",
        "--no-ws",
        "--respawn-failed-workers",
        # A worker still busy this long after SIGTERM is killed, so a stop always ends.
        "--workers-kill-timeout",
        "30",
        "--working-dir",
        str(working_dir),
    ]
    if log_config is not None:
        command += ["--log-config", str(log_config)]
    return [*command, WSGI_APP]


def json_log_config() -> dict[str, object]:
    """Granian's own lines (start-up, workers) as JSON too, for LOG_FORMAT=json."""
    formatter = {
        "()": "connectors.logs.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
    }
    return {
        "formatters": {"generic": formatter, "access": formatter},
        "handlers": {
            "console": {"formatter": "generic", "class": "logging.StreamHandler"},
            "access": {"formatter": "access", "class": "logging.StreamHandler"},
        },
    }


def write_json_log_config(directory: Path) -> Path:
    path = directory / "granian-logging.json"
    path.write_text(json.dumps(json_log_config()))
    os.chmod(path, 0o600)
    return path
