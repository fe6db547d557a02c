from __future__ import annotations

import random
import time
import uuid
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from connectors import logs
from connectors.models import ConnectionStatus, PlatformConnection, SyncStatus
from connectors.providers import PROVIDERS

# Stable ids so `make run`'s printed curl line keeps working across restarts.
DEMO_NAMESPACE = uuid.UUID("6f1d8c2e-5a3b-4c7d-9e0f-1a2b3c4d5e6f")


def demo_user_id(index: int) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"demo-user-{index}"))


def seed(
    *, users: int, seed_value: int = 42, min_connections: int = 3, max_connections: int = 7
) -> int:
    """Create (or leave in place) `users` demo users with 3-7 connections each."""
    rng = random.Random(seed_value)
    now = timezone.now()
    providers = list(PROVIDERS)
    rows: list[PlatformConnection] = []
    for index in range(users):
        user_id = uuid.UUID(demo_user_id(index))
        for provider in rng.sample(
            providers, rng.randint(min_connections, min(max_connections, len(providers)))
        ):
            active = rng.random() > 0.15
            connected_at = now - timedelta(days=rng.randint(1, 400))
            sync = rng.choices(list(SyncStatus), weights=[1, 1, 12, 2])[0]
            rows.append(
                PlatformConnection(
                    user_id=user_id,
                    provider=provider,
                    is_active=active,
                    status=ConnectionStatus.CONNECTED if active else ConnectionStatus.DISCONNECTED,
                    scopes=list(PROVIDERS[provider].scopes),
                    connected_at=connected_at,
                    token_expires_at=now + timedelta(hours=rng.randint(1, 48)) if active else None,
                    access_token=f"demo-access-{uuid.uuid4().hex}" if active else None,
                    refresh_token=f"demo-refresh-{uuid.uuid4().hex}" if active else None,
                    last_sync_at=now - timedelta(minutes=rng.randint(1, 10_000)),
                    last_sync_status=sync,
                    last_sync_error="HTTP 429 from provider" if sync == SyncStatus.FAILED else "",
                )
            )
    created = 0
    with transaction.atomic():
        for start in range(0, len(rows), 2000):
            # bulk_create invalidates the users it touches (PlatformConnectionQuerySet).
            created += len(
                PlatformConnection.objects.bulk_create(
                    rows[start : start + 2000], ignore_conflicts=True
                )
            )
    return created


class Command(BaseCommand):
    help = "Create realistic demo users and connections (idempotent: existing rows are kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=25)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        # One summary, not an "Invalidated" line per user (-v 2 keeps those).
        with logs.quiet("connectors.cache") if options["verbosity"] < 2 else nullcontext():
            rows = seed(users=options["users"], seed_value=options["seed"])
        users = options["users"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Seeded {users:,} demo user{pluralize(users)} ({rows:,} connection "
                f"row{pluralize(rows)}) in {time.perf_counter() - started:.1f} s. "
                f"First user: {demo_user_id(0)}"
            )
        )
