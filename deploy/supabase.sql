-- What a Supabase deployment of this service needs in Postgres (README, "Security").
--
-- Supabase exposes the `public` schema through its Data API (PostgREST), and new tables there
-- are granted to the `anon` and `authenticated` roles by default: without this script anyone
-- holding the project's anon key could read connectors_platformconnection through
-- https://<ref>.supabase.co/rest/v1/. And the `postgres` role bypasses RLS, so the service
-- should not run as it.
--
-- This script, run as `postgres` (SQL editor or psql) after every `manage.py migrate`:
--   1. creates `connectors_service`, the role the service connects as (NOLOGIN here: give it a
--      password yourself, see below, so no secret lives in this file);
--   2. grants it exactly what the app does at run time: DML on this service's tables and use
--      of their sequences (no DDL: migrations keep running as `postgres`, the tables' owner);
--   3. revokes every privilege of `anon`, `authenticated` and PUBLIC on those tables;
--   4. enables row-level security on them with one policy, for `connectors_service` only, so
--      even a grant restored by mistake exposes nothing through the Data API;
--   5. for tables created later (the next migration, or anyone's table in `public`): revokes
--      Supabase's default privileges for `anon` and `authenticated`, and installs an event
--      trigger that enables RLS on every new table in `public` and revokes those roles' grants
--      (whoever created it); a new table of this service's also gets step 2's grants and
--      step 4's policy at once, so the service can use it before this script is run again.
-- It is idempotent: run it again after each migration that adds a table. Step 5 needs event
-- triggers, which Supabase allows the `postgres` role.
--
-- Then:  ALTER ROLE connectors_service WITH LOGIN PASSWORD '<a long random password>';
-- and connect the service through Supavisor as user `connectors_service.<project-ref>`.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'connectors_service') THEN
        CREATE ROLE connectors_service NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO connectors_service;

DO $$
DECLARE
    t record;
    s record;
BEGIN
    -- This service's tables: its apps (connectors_, extraction_), Django's own (auth_,
    -- django_: sessions, admin log, users of the staff admin) and django-axes' (axes_: failed
    -- admin logins). Supabase's auth.users lives in the `auth` schema and is not touched.
    FOR t IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p')
          AND (c.relname LIKE 'connectors\_%' OR c.relname LIKE 'extraction\_%'
               OR c.relname LIKE 'auth\_%' OR c.relname LIKE 'django\_%'
               OR c.relname LIKE 'axes\_%')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE public.%I FROM anon, authenticated, PUBLIC',
                       t.relname);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I '
                       'TO connectors_service', t.relname);
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('DROP POLICY IF EXISTS connectors_service_all ON public.%I', t.relname);
        EXECUTE format('CREATE POLICY connectors_service_all ON public.%I FOR ALL '
                       'TO connectors_service USING (true) WITH CHECK (true)', t.relname);
    END LOOP;

    -- Their sequences: identity columns, and the row-version sequence the trigger of migration
    -- 0002 draws from as the writing role.
    FOR s IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind = 'S'
          AND (c.relname LIKE 'connectors\_%' OR c.relname LIKE 'extraction\_%'
               OR c.relname LIKE 'auth\_%' OR c.relname LIKE 'django\_%'
               OR c.relname LIKE 'axes\_%')
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE public.%I FROM anon, authenticated, PUBLIC',
                       s.relname);
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO connectors_service',
                       s.relname);
    END LOOP;
END
$$;

-- 5. Tables created later. Default privileges of the role running this script (`postgres`,
-- which runs the migrations): Supabase grants everything in `public` to anon and authenticated.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated;

-- And whatever the creator's defaults (supabase_admin has its own, which postgres cannot
-- change): every new table in `public` gets RLS and loses anon's and authenticated's grants.
-- In a schema the Data API does not expose, so it is never callable through /rest/v1/rpc.
CREATE SCHEMA IF NOT EXISTS connectors_private;
REVOKE ALL ON SCHEMA connectors_private FROM PUBLIC;

CREATE OR REPLACE FUNCTION connectors_private.secure_new_tables() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    obj record;
    ours boolean;
BEGIN
    FOR obj IN
        SELECT d.objid, d.object_type, d.object_identity, c.relname
        FROM pg_event_trigger_ddl_commands() d
        JOIN pg_class c ON c.oid = d.objid
        WHERE d.schema_name = 'public'
          AND d.object_type IN ('table', 'sequence')
          AND d.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO',
                                'CREATE SEQUENCE')
    LOOP
        ours := obj.relname LIKE 'connectors\_%' OR obj.relname LIKE 'extraction\_%'
                OR obj.relname LIKE 'auth\_%' OR obj.relname LIKE 'django\_%'
                OR obj.relname LIKE 'axes\_%';
        IF obj.object_type = 'sequence' THEN
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM anon, authenticated, PUBLIC',
                           obj.object_identity);
            IF ours THEN
                EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO connectors_service',
                               obj.object_identity);
            END IF;
            CONTINUE;
        END IF;
        EXECUTE format('REVOKE ALL ON TABLE %s FROM anon, authenticated, PUBLIC',
                       obj.object_identity);
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', obj.object_identity);
        IF ours THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s '
                           'TO connectors_service', obj.object_identity);
            EXECUTE format('CREATE POLICY connectors_service_all ON %s FOR ALL '
                           'TO connectors_service USING (true) WITH CHECK (true)',
                           obj.object_identity);
        END IF;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS connectors_secure_new_tables;
CREATE EVENT TRIGGER connectors_secure_new_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE SEQUENCE')
    EXECUTE FUNCTION connectors_private.secure_new_tables();
