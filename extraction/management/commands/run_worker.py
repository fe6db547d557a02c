"""`manage.py run_worker`: django-tasks-db's db_worker (same options: --interval, --batch,
--max-tasks, --queue-name, ...) plus a thread that recovers jobs whose worker died."""

from __future__ import annotations

import os
from typing import Any

from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DBWorkerCommand

from extraction import recovery


class Command(DBWorkerCommand):
    help = "Run extraction jobs (django-tasks-db's db_worker) and recover those of dead workers."

    def handle(self, *args: Any, **options: Any) -> None:
        # With --reload, this process only watches files; its child runs the tasks.
        if not options.get("reload") or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
            recovery.start_sweeper()
        super().handle(*args, **options)
