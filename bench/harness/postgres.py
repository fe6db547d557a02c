"""The benchmark's own databases, on the shared server or on a throwaway cluster: created
fresh, dropped at the end, never anyone else's."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

SHARED_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` (any database of that server) pointed at database `name`."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def create_database(admin_url: str, name: str) -> None:
    """A new, empty database `name` (a leftover of an interrupted run is dropped first)."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        # As on Supabase ("Every Supabase database is set to UTC timezone by default"): Debian's
        # default, "Etc/UTC", is another name for the same zone, but Django compares names and
        # would send SET TIME ZONE on every new connection.
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(ident))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
