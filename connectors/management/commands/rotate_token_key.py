from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.key_rotation import RotationResult, token_key_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored OAuth token under the newest TOKEN_ENCRYPTION_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive.")
        started = time.monotonic()

        def progress(result: RotationResult) -> None:
            self.stdout.write(
                f"  {result.rows_seen:,} connections checked, "
                f"{result.tokens_rotated:,} tokens re-encrypted"
            )

        result = token_key_rotate(batch_size=options["batch_size"], progress=progress)
        elapsed = time.monotonic() - started
        if result.tokens_current:
            self.stdout.write(
                f"  {result.tokens_current:,} tokens were already under the newest key"
            )
        if result.tokens_unreadable:
            raise CommandError(
                f"{result.tokens_unreadable:,} tokens could not be decrypted with any "
                "TOKEN_ENCRYPTION_KEY and were left as they are: was a key removed too early? "
                f"({result.tokens_rotated:,} others were re-encrypted.)"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done! Re-encrypted {result.tokens_rotated:,} tokens in {elapsed:.1f} s"
            )
        )
