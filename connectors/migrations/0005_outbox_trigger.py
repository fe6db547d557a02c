"""Write a PendingInvalidation row in the same transaction as every connection change.

This is the durable half of invalidation (connectors/cache/outbox.py): Django's on_commit DEL is the
fast path, and these rows are what is left to replay when that DEL could not reach Redis, when
the process died between commit and DEL, or when the write came from outside Django.

Postgres uses statement-level triggers with transition tables, so a bulk write of N rows for
one user costs one outbox row, not N; the functions are SECURITY DEFINER with the migration's
search_path, so another service writing the table under its own role (with no right on the
outbox table) keeps writing. SQLite has only row-level triggers.
"""

from django.db import migrations

TABLE = "connectors_platformconnection"
OUTBOX = "connectors_pendinginvalidation"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    INSERT INTO {outbox} (user_id, created_at)
        SELECT DISTINCT user_id, clock_timestamp() FROM ({rows}) AS changed;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT;
"""
_PG_TRIGGERS = {
    # event: (transition tables, the rows whose users changed)
    "INSERT": ("NEW TABLE AS new_rows", "SELECT user_id FROM new_rows"),
    "UPDATE": (
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "SELECT user_id FROM new_rows UNION SELECT user_id FROM old_rows",
    ),
    "DELETE": ("OLD TABLE AS old_rows", "SELECT user_id FROM old_rows"),
}


def _pg_forward() -> list[str]:
    statements = []
    for event, (referencing, rows) in _PG_TRIGGERS.items():
        name = f"{TABLE}_outbox_{event.lower()}"
        statements.append(_PG_FUNCTION.format(name=name, outbox=OUTBOX, rows=rows))
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {TABLE};")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {TABLE} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}();"
        )
    return statements


def _pg_reverse() -> list[str]:
    statements = []
    for event in _PG_TRIGGERS:
        name = f"{TABLE}_outbox_{event.lower()}"
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {TABLE};")
        statements.append(f"DROP FUNCTION IF EXISTS {name}();")
    return statements


_SQLITE_ROW = {"INSERT": "NEW.user_id", "UPDATE": "NEW.user_id", "DELETE": "OLD.user_id"}


def _sqlite_forward() -> list[str]:
    statements = []
    for event, user in _SQLITE_ROW.items():
        moved = (
            f" INSERT INTO {OUTBOX} (user_id, created_at) SELECT OLD.user_id, "
            "strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE OLD.user_id IS NOT NEW.user_id;"
            if event == "UPDATE"
            else ""
        )
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {TABLE}_outbox_{event.lower()} AFTER {event} ON {TABLE} "
            f"BEGIN INSERT INTO {OUTBOX} (user_id, created_at) VALUES "
            f"({user}, strftime('%Y-%m-%d %H:%M:%f', 'now'));{moved} END;"
        )
    return statements


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = _pg_forward() if vendor == "postgresql" else _sqlite_forward()
    for statement in statements:
        schema_editor.execute(statement)


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        statements = _pg_reverse()
    else:
        statements = [f"DROP TRIGGER IF EXISTS {TABLE}_outbox_{e.lower()};" for e in _SQLITE_ROW]
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("connectors", "0004_pending_invalidation")]
    operations = [migrations.RunPython(forward, reverse)]
