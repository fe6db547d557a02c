from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.auth import IssueTokenUnavailable, issue_token
from connectors.errors import InvalidUserId
from connectors.ids import normalize_user_id


class Command(BaseCommand):
    help = (
        "Print a Supabase-style access token signed with SUPABASE_JWT_SECRET (HS256; demos, curl)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", nargs="?", help="The user's UUID.")
        parser.add_argument(
            "--service-role",
            action="store_true",
            help="A service-role token (acts for any user) instead.",
        )
        parser.add_argument("--ttl", type=int, default=3600, help="Lifetime in seconds.")

    def handle(self, *args: Any, **options: Any) -> None:
        user_id = options["user_id"]
        if not options["service_role"]:
            if not user_id:
                raise CommandError("Give a user id, or --service-role.")
            try:
                user_id = normalize_user_id(user_id)
            except InvalidUserId as e:
                raise CommandError(e.message) from e
        if options["ttl"] <= 0:
            raise CommandError("--ttl must be positive.")
        cap = settings.JWT_MAX_LIFETIME_SECONDS
        if not options["service_role"] and options["ttl"] > cap:
            raise CommandError(
                f"--ttl is longer than JWT_MAX_LIFETIME_SECONDS ({cap} s): this server would "
                "refuse such a user token."
            )
        try:
            token = issue_token(
                user_id=user_id, service_role=options["service_role"], ttl_seconds=options["ttl"]
            )
        except IssueTokenUnavailable as e:
            raise CommandError(str(e)) from e
        self.stdout.write(token)
