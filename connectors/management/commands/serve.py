from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.template.defaultfilters import pluralize

from connectors import metrics
from connectors_site.server import server_command, write_json_log_config


class Command(BaseCommand):
    help = (
        "Production server: migrate, collect static files, then serve the app on HOST:PORT with "
        "WEB_CONCURRENCY workers (never seeds demo data or prints tokens)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-migrate",
            action="store_true",
            help="Skip `migrate` (when a release step runs it once for several servers).",
        )
        parser.add_argument("--no-collectstatic", action="store_true", help="Skip `collectstatic`.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=max(0, options["verbosity"] - 1))
        if not options["no_collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        metrics_dir = self._metrics_dir()
        log_config = write_json_log_config(metrics_dir) if settings.LOG_FORMAT == "json" else None
        command = server_command(
            host=settings.SERVE_HOST,
            port=settings.SERVE_PORT,
            workers=settings.WEB_CONCURRENCY,
            threads=settings.WEB_THREADS,
            working_dir=Path(settings.BASE_DIR),
            log_config=log_config,
        )
        workers, threads = settings.WEB_CONCURRENCY, settings.WEB_THREADS
        self.stdout.write(
            f"Serving http://{settings.SERVE_HOST}:{settings.SERVE_PORT}/ with {workers} "
            f"worker{pluralize(workers)} x {threads} thread{pluralize(threads)} (granian, WSGI); "
            f"metrics from every worker in {metrics_dir}"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        # Replaced, not wrapped: the server is this process (systemd's main PID, its signals).
        os.execv(command[0], command)  # noqa: S606 - our own fixed argv, no shell

    def _metrics_dir(self) -> Path:
        """Where every worker writes its metric samples (prometheus-client's multi-process
        mode). A directory given in PROMETHEUS_MULTIPROC_DIR is shared with other processes
        (the listener) and cleared of what dead processes left; otherwise a new private one."""
        given = metrics.multiprocess_dir()
        if given:
            metrics.prepare_multiprocess_dir(given)
            path = Path(given)
        else:
            path = Path(tempfile.mkdtemp(prefix="connectors-metrics-"))
            os.environ[metrics.MULTIPROC_ENV] = str(path)
        return path
