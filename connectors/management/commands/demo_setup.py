from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from connectors.auth import IssueTokenUnavailable, issue_token
from connectors.management.commands.seed_demo import demo_user_id

_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def is_development(*, debug: bool, database: Mapping[str, Any]) -> tuple[bool, str]:
    """Development means DJANGO_DEBUG on and a database on this machine (SQLite, or Postgres on
    localhost or a Unix socket): demo rows never land in a shared or production database."""
    if not debug:
        return False, "DJANGO_DEBUG is off"
    if "sqlite" in str(database["ENGINE"]):
        return True, ""
    host = str(database.get("HOST") or "")
    if host in _LOCAL_HOSTS or host.startswith("/"):
        return True, ""
    return False, f"the database is on {host}, not this machine"


class Command(BaseCommand):
    help = (
        "`make run`'s welcome: in development only (DJANGO_DEBUG=1 and a local database), seed "
        "demo users and print a curl line with a token for one of them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=25, help="Demo users (default 25).")

    def handle(self, *args: Any, **options: Any) -> None:
        development, why_not = is_development(
            debug=settings.DEBUG, database=settings.DATABASES["default"]
        )
        if not development:
            self.stdout.write(
                f"No demo data and no token: {why_not}. (`make run` seeds demo users only in "
                "development: DJANGO_DEBUG=1 and a local database.)"
            )
            return
        call_command("seed_demo", users=options["users"], stdout=self.stdout)
        user = demo_user_id(0)
        url = f"http://{settings.SERVE_HOST}:{settings.SERVE_PORT}/api/connectors/status/{user}"
        try:
            token = issue_token(user_id=user)
        except IssueTokenUnavailable:
            self.stdout.write(
                "No token printed: SUPABASE_JWT_SECRET is not set, so tokens are verified "
                f"against {settings.SUPABASE_URL}'s keys; call the API with an access token "
                f"from your Supabase project:\n  curl -s -H 'Authorization: Bearer <token>' {url}"
            )
            return
        base = f"http://{settings.SERVE_HOST}:{settings.SERVE_PORT}/api"
        auth = f"-H 'Authorization: Bearer {token}'"
        self.stdout.write(
            f"\nTry it:\n  curl -s {auth} {url}\n"
            f"Start a sync, then list the jobs (the worker started by `make run` runs it):\n"
            f"  curl -s {auth} -H 'Content-Type: application/json' -d '{{\"provider\": "
            f'"github"}}\' {base}/extraction/jobs\n'
            f"  curl -s {auth} {base}/extraction/jobs\n"
        )
