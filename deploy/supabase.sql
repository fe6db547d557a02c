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
--      even a grant restored by mistake exposes nothing through the Data API.
-- It is idempotent: run it again after each migration that adds a table.
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
    -- This service's tables: its apps (connectors_, extraction_) and Django's own (auth_,
    -- django_: sessions, admin log, users of the staff admin). Supabase's auth.users lives in
    -- the `auth` schema and is not touched.
    FOR t IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p')
          AND (c.relname LIKE 'connectors\_%' OR c.relname LIKE 'extraction\_%'
               OR c.relname LIKE 'auth\_%' OR c.relname LIKE 'django\_%')
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
               OR c.relname LIKE 'auth\_%' OR c.relname LIKE 'django\_%')
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE public.%I FROM anon, authenticated, PUBLIC',
                       s.relname);
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO connectors_service',
                       s.relname);
    END LOOP;
END
$$;
