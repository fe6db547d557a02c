from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import pluralize

from connectors.key_rotation import RotationResult, token_key_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored OAuth token under the newest TOKEN_ENCRYPTION_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )
        parser.add_argument(
            "--forget-unreadable",
            action="store_true",
            help="Clear tokens no configured key can decrypt (their key is lost) and mark those "
            "connections expired, so their users reconnect.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive.")
        started = time.monotonic()

        def progress(result: RotationResult) -> None:
            self.stdout.write(
                f"  {result.rows_seen:,} connection{pluralize(result.rows_seen)} checked, "
                f"{result.tokens_rotated:,} token{pluralize(result.tokens_rotated)} re-encrypted"
            )

        result = token_key_rotate(
            batch_size=options["batch_size"],
            forget_unreadable=options["forget_unreadable"],
            progress=progress,
        )
        elapsed = time.monotonic() - started
        if result.tokens_current:
            self.stdout.write(
                f"  {result.tokens_current:,} token{pluralize(result.tokens_current)} "
                f"{pluralize(result.tokens_current, 'was,were')} already under the newest key"
            )
        if result.tokens_forgotten:
            self.stdout.write(
                f"  {result.tokens_forgotten:,} unreadable token"
                f"{pluralize(result.tokens_forgotten)} cleared; connections without an access "
                "token are now 'expired' and their users must reconnect"
            )
        elif result.tokens_unreadable:
            n = result.tokens_unreadable
            raise CommandError(
                f"{n:,} token{pluralize(n)} could not be decrypted with any "
                f"TOKEN_ENCRYPTION_KEY and {pluralize(n, 'was,were')} left as "
                f"{pluralize(n, 'it is,they are')} ({result.tokens_rotated:,} other"
                f"{pluralize(result.tokens_rotated)} re-encrypted). Was a key removed too early? "
                "Then list it again after the newest one (TOKEN_ENCRYPTION_KEY=new,old) and run "
                "this again. If that key is lost, run with --forget-unreadable: those tokens are "
                "cleared and their users reconnect."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Re-encrypted {result.tokens_rotated:,} "
                f"token{pluralize(result.tokens_rotated)} in {elapsed:.1f} s"
            )
        )
