"""deploy/supabase.sql against the local Postgres, in a throwaway database.

The database is migrated like a real deployment, given Supabase's default grants (everything in
`public` to anon and authenticated), then the script runs (twice: it must be idempotent). The
service role must be able to do what the app does; anon and authenticated nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from tests.test_settings import BASE_ENV

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "supabase.sql"
APP_TABLES = (
    "connectors_platformconnection",
    "connectors_oauthstateuse",
    "extraction_extractionjob",
    "django_session",
    "auth_user",
    "axes_accessattempt",
)


def _admin_conninfo(dbname: str) -> dict[str, Any]:
    db = settings.DATABASES["default"]
    info = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"]}
    if db.get("PASSWORD"):
        info["password"] = db["PASSWORD"]
    return {**info, "dbname": dbname, "autocommit": True}


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    suffix = uuid.uuid4().hex[:10]
    dbname, role = f"connectors_rls_{suffix}", f"connectors_service_{suffix}"
    with psycopg.connect(**_admin_conninfo("postgres")) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        # Cluster-wide, as on Supabase: created if absent, never dropped (other databases and
        # other test runs may use them; they are NOLOGIN and own nothing).
        for name in ("anon", "authenticated"):
            admin.execute(
                sql.SQL(
                    "DO $$ BEGIN CREATE ROLE {} NOLOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                ).format(sql.Identifier(name))
            )
    try:
        db = _admin_conninfo(dbname)
        with psycopg.connect(**db) as conn:
            # Supabase's default privileges: whatever `postgres` creates in public later
            # (every migration) is granted to anon and authenticated.
            conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON TABLES TO anon, authenticated; "
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON SEQUENCES TO anon, authenticated"
            )
        url = f"postgres://{db['user']}@{db['host']}:{db['port']}/{dbname}"
        if "password" in db:
            url = f"postgres://{db['user']}:{db['password']}@{db['host']}:{db['port']}/{dbname}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            env={**env, **BASE_ENV, "DATABASE_URL": url, "DJANGO_DEBUG": "0"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        with psycopg.connect(**db) as conn:
            # Supabase's defaults for new tables in public.
            conn.execute(
                "GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated; "
                "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated"
            )
            # A per-run role name: roles are cluster-wide and several test runs may share it.
            script = SCRIPT.read_text().replace("connectors_service", role)
            conn.execute(script)
            conn.execute(script)  # idempotent
            yield conn, role
    finally:
        with psycopg.connect(**_admin_conninfo("postgres")) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def privilege(conn: psycopg.Connection[Any], role: str, table: str, what: str) -> bool:
    row = conn.execute(
        "SELECT has_table_privilege(%s, %s, %s)", [role, f"public.{table}", what]
    ).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.parametrize("table", APP_TABLES)
def test_anon_and_authenticated_have_no_privilege(deployment, table):
    conn, _ = deployment
    for role in ("anon", "authenticated"):
        for what in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES"):
            assert not privilege(conn, role, table, what), (role, table, what)


@pytest.mark.parametrize("table", APP_TABLES)
def test_the_service_role_has_what_the_app_needs_and_no_more(deployment, table):
    conn, role = deployment
    for what in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert privilege(conn, role, table, what), (table, what)
    assert not privilege(conn, role, table, "TRUNCATE")


def test_rls_is_enabled_on_every_table_of_the_service(deployment):
    conn, _ = deployment
    rows = conn.execute(
        "SELECT c.relname, c.relrowsecurity FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ).fetchall()
    assert {name for name, _ in rows} >= set(APP_TABLES)
    assert [name for name, enabled in rows if not enabled] == []


def test_the_service_role_works_and_anon_is_refused(deployment):
    conn, role = deployment
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute(
            "INSERT INTO connectors_platformconnection (user_id, provider, is_active, status, "
            "scopes, last_sync_status, last_sync_error, version, created_at, updated_at) "
            "VALUES (%s, 'github', true, 'connected', '[]', 'pending', '', 0, now(), now())",
            [uuid.uuid4()],
        )  # the version trigger's sequence included
        row = conn.execute("SELECT count(*), max(version) FROM connectors_platformconnection")
        count, version = row.fetchone() or (0, 0)
        assert count == 1 and version > 0
        conn.execute("UPDATE connectors_platformconnection SET is_active = false")
        conn.execute("DELETE FROM connectors_platformconnection")
    for anonymous in ("anon", "authenticated"):
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege),
            conn.transaction(force_rollback=True),
        ):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(anonymous)))
            conn.execute("SELECT * FROM connectors_platformconnection")


# --- Tables created after the script (the next migration, or anyone's) ----------------------------
def rls_enabled(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute(
        "SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", [f"public.{table}"]
    ).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.parametrize(
    "create",
    [
        "CREATE TABLE public.{name} (id bigint GENERATED BY DEFAULT AS IDENTITY, note text)",
        "CREATE TABLE public.{name} (id serial PRIMARY KEY, note text)",
        "CREATE TABLE public.{name} AS SELECT 1 AS id, 'x'::text AS note",
        "SELECT 1 AS id, 'x'::text AS note INTO public.{name}",
    ],
)
def test_a_table_created_later_is_not_readable_by_anon_and_has_rls(deployment, create):
    conn, _ = deployment
    name = f"later_{uuid.uuid4().hex[:8]}"
    conn.execute(create.format(name=name))
    for role in ("anon", "authenticated"):
        for what in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert not privilege(conn, role, name, what), (role, name, what)
    assert rls_enabled(conn, name)
    sequences = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_depend d ON d.objid = c.oid "
        "WHERE c.relkind = 'S' AND d.refobjid = %s::regclass",
        [f"public.{name}"],
    ).fetchall()
    for (sequence,) in sequences:
        for role in ("anon", "authenticated"):
            row = conn.execute(
                "SELECT has_sequence_privilege(%s, %s, 'USAGE')", [role, f"public.{sequence}"]
            ).fetchone()
            assert row is not None and not row[0], (role, sequence)
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        conn.transaction(force_rollback=True),
    ):
        conn.execute("SET LOCAL ROLE anon")
        conn.execute(sql.SQL("SELECT * FROM public.{}").format(sql.Identifier(name)))


def test_a_table_of_the_service_created_later_is_usable_by_it_at_once(deployment):
    conn, role = deployment
    name = f"connectors_later_{uuid.uuid4().hex[:8]}"
    conn.execute(
        sql.SQL("CREATE TABLE public.{} (id bigserial PRIMARY KEY, note text)").format(
            sql.Identifier(name)
        )
    )
    assert rls_enabled(conn, name)
    assert not privilege(conn, "anon", name, "SELECT")
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("INSERT INTO {} (note) VALUES ('x')").format(sql.Identifier(name)))
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
        assert row.fetchone() == (1,)


def test_a_table_created_by_another_role_with_its_own_defaults_is_secured_too(deployment):
    """Supabase's supabase_admin has default grants of its own, which `postgres` cannot revoke:
    the event trigger covers tables whoever creates them."""
    conn, _ = deployment
    creator = f"creator_{uuid.uuid4().hex[:8]}"
    name = f"later_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(creator)))
    try:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(creator)))
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT ALL ON TABLES TO anon, authenticated"
            ).format(sql.Identifier(creator))
        )
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(creator)))
            conn.execute(sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(name)))
        assert not privilege(conn, "anon", name, "SELECT")
        assert rls_enabled(conn, name)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(creator)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(creator)))
