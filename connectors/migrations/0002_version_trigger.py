"""A database-assigned, monotonic row version, bumped by every INSERT and UPDATE.

It lives in the database so that writes Django never sees (QuerySet.update, raw SQL, other
services sharing the table) bump it too. ETags and the consistency checker depend on it.

On Postgres the function is SECURITY DEFINER (it runs as the migration's role, with the
search_path of the migration): another service writing the table under its own role, with no
right on the sequence, must not have its writes refused because of this trigger.
"""

from django.db import migrations

TABLE = "connectors_platformconnection"

POSTGRES_FORWARD = f"""
CREATE SEQUENCE IF NOT EXISTS {TABLE}_version_seq;
CREATE OR REPLACE FUNCTION {TABLE}_bump_version() RETURNS trigger AS $$
BEGIN
    -- Fires after the row lock is taken, so per-row versions follow commit order.
    NEW.version := nextval('{TABLE}_version_seq');
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT;
DROP TRIGGER IF EXISTS {TABLE}_version ON {TABLE};
CREATE TRIGGER {TABLE}_version BEFORE INSERT OR UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_bump_version();
"""
POSTGRES_REVERSE = f"""
DROP TRIGGER IF EXISTS {TABLE}_version ON {TABLE};
DROP FUNCTION IF EXISTS {TABLE}_bump_version();
DROP SEQUENCE IF EXISTS {TABLE}_version_seq;
"""

# SQLite cannot assign NEW in a BEFORE trigger; an AFTER trigger updates the row instead
# (recursive_triggers is off, so that UPDATE does not fire the trigger again). Writers are
# serialized by SQLite's database lock, so MAX()+1 is monotonic.
SQLITE_FORWARD = [
    f"""
CREATE TRIGGER IF NOT EXISTS {TABLE}_version_{event.lower()} AFTER {event} ON {TABLE}
BEGIN
    UPDATE {TABLE}
       SET version = (SELECT COALESCE(MAX(version), 0) + 1 FROM {TABLE}),
           updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
     WHERE id = NEW.id;
END;
"""
    for event in ("INSERT", "UPDATE")
]
SQLITE_REVERSE = [f"DROP TRIGGER IF EXISTS {TABLE}_version_{e};" for e in ("insert", "update")]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("connectors", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
