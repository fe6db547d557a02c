"""NOTIFY on every write to connectors_platformconnection, whoever makes it.

Django's signals and QuerySet overrides only see writes made through this process's ORM. Raw
SQL, `psql`, other services and migrations writing the table are invisible to them, so their
rows would sit stale in the cache for the whole TTL. This trigger tells
`manage.py listen_invalidations` (connectors/cache/listener.py) about every such write.

Postgres delivers a NOTIFY only when (and if) the transaction commits, so the listener never
evicts for a write that rolled back and never evicts before the new row is visible. Identical
(channel, payload) pairs within one transaction are folded into one notification, so a bulk
write of N rows of one user costs the listener one invalidation. Payloads are the user id
(36 bytes, far below the 8000-byte limit). TRUNCATE cannot name users, so it sends "*", which
the listener treats like a reconnect: invalidate every status entry.

Postgres only: SQLite has no NOTIFY and a single-process SQLite deployment has no other writer.
"""

from django.db import migrations

TABLE = "connectors_platformconnection"
CHANNEL = "connectors_platformconnection"  # connectors.cache.listener.CHANNEL

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('{CHANNEL}', OLD.user_id::text);
    ELSE
        PERFORM pg_notify('{CHANNEL}', NEW.user_id::text);
        -- A row moved to another user changes both users' status documents.
        IF TG_OP = 'UPDATE' AND NEW.user_id IS DISTINCT FROM OLD.user_id THEN
            PERFORM pg_notify('{CHANNEL}', OLD.user_id::text);
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION {TABLE}_notify_truncate() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {TABLE}_notify ON {TABLE};
CREATE TRIGGER {TABLE}_notify AFTER INSERT OR UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_notify();
DROP TRIGGER IF EXISTS {TABLE}_notify_truncate ON {TABLE};
CREATE TRIGGER {TABLE}_notify_truncate AFTER TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify_truncate();
"""
POSTGRES_REVERSE = f"""
DROP TRIGGER IF EXISTS {TABLE}_notify_truncate ON {TABLE};
DROP TRIGGER IF EXISTS {TABLE}_notify ON {TABLE};
DROP FUNCTION IF EXISTS {TABLE}_notify_truncate();
DROP FUNCTION IF EXISTS {TABLE}_notify();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("connectors", "0002_version_trigger")]
    operations = [migrations.RunPython(forward, reverse)]
