-- Salesbook database bootstrap: one login role per service, each owning its own schema.
--
-- Run once per database, as a superuser, before the first migration:
--     psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f deploy/bootstrap.sql
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d, where the postgres image
-- runs it on first start). It is idempotent: running it again changes nothing, and running
-- it over a database that was migrated before it existed hands that database over.
--
-- What it sets up
--   * roles salesbook_orders, salesbook_payments, salesbook_closing, salesbook_analytics;
--     each owns the schema of the same name and has no privilege on any other schema's
--     tables, except reading the outboxes its subscriptions read (postgres transport):
--         orders   reads payments.outbox, closing.outbox
--         payments reads orders.outbox,   closing.outbox
--         closing  reads orders.outbox,   payments.outbox
--         analytics reads orders.outbox,  payments.outbox
--     (services/*/handlers.py and services/orders/cutoff.py declare these sources). BI
--     tools read analytics' views through the role analytics_bi, which the analytics
--     migrations create and grant.
--   * a login role salesbook_backup that may read every table of every schema (the
--     predefined role pg_read_all_data) and change nothing: what `salesbook backup` needs.
--   * CREATE on the database for the four roles: migrations begin with
--     `CREATE SCHEMA IF NOT EXISTS <own schema>`, which PostgreSQL checks against that
--     privilege even when the schema exists. It lets a role create a new, empty schema of
--     its own; it never opens anyone else's.
--   * an event trigger that, whenever a table or view is created in a service schema, gives
--     it to the schema's role (so they stay the service's own, and its later migrations may
--     change them, even when a superuser migrates) and, for an outbox, grants SELECT to
--     exactly the roles that read it. Grants cannot be made ahead of time on tables that do
--     not exist yet; the trigger makes them at the moment the migration creates the table,
--     whoever runs it. A service schema created by someone else (a restore as superuser
--     recreates the schemas) is given to its role the same way.
--
-- Migrations: either way works. Each service migrates its own schema as its own role
-- (`salesbook serve` does so on start), or an administrator runs `salesbook migrate` once
-- as a superuser (the compose file's migrate step); the trigger hands the tables over.
--
-- Passwords: the roles are created without one, so nobody can log in as them over a
-- password-checked connection until you set it: ALTER ROLE salesbook_orders PASSWORD '...';
-- (deploy/role-passwords.sh does so from the environment; docker-compose.yml runs it after
-- this file). An existing role keeps its password when this file runs again.

DO $bootstrap$
DECLARE
    service text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'salesbook_backup') THEN
        CREATE ROLE salesbook_backup LOGIN;
    END IF;
    GRANT pg_read_all_data TO salesbook_backup;
    FOREACH service IN ARRAY ARRAY['orders', 'payments', 'closing', 'analytics'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'salesbook_' || service) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', 'salesbook_' || service);
        END IF;
        EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(),
                       'salesbook_' || service);
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', service,
                       'salesbook_' || service);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', service, 'salesbook_' || service);
        -- Nobody else may create objects in, or look into, a service's schema by default.
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', service);
    END LOOP;
END
$bootstrap$;

-- Which roles read which producer's outbox on the postgres transport.
CREATE OR REPLACE FUNCTION public.salesbook_outbox_readers(source text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE source
        WHEN 'orders'   THEN ARRAY['salesbook_payments', 'salesbook_closing',
                                   'salesbook_analytics']
        WHEN 'payments' THEN ARRAY['salesbook_orders', 'salesbook_closing',
                                   'salesbook_analytics']
        WHEN 'closing'  THEN ARRAY['salesbook_orders', 'salesbook_payments']
        ELSE ARRAY[]::text[]
    END
$$;

-- Gives a service schema to its role, closed to everyone else (as the block above does).
CREATE OR REPLACE FUNCTION public.salesbook_adopt_schema(schema_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF schema_name NOT IN ('orders', 'payments', 'closing', 'analytics') THEN
        RETURN;
    END IF;
    IF (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = schema_name)
            <> 'salesbook_' || schema_name THEN
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', schema_name, 'salesbook_' || schema_name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', schema_name);
    END IF;
END
$$;

-- Gives a table or view of a service schema to its role and, for an outbox, grants its
-- readers. Run by whoever created it: its owner (allowed to grant on it) or a superuser.
CREATE OR REPLACE FUNCTION public.salesbook_adopt_table(schema_name text, table_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    owner_role text := 'salesbook_' || schema_name;
    relation regclass;
    reader text;
BEGIN
    IF schema_name NOT IN ('orders', 'payments', 'closing', 'analytics') THEN
        RETURN;
    END IF;
    relation := format('%I.%I', schema_name, table_name)::regclass;
    IF (SELECT c.relowner::regrole::text FROM pg_class c WHERE c.oid = relation)
            <> owner_role THEN
        -- Also moves the sequences the table's columns own (outbox and audit ids). Only the
        -- owner may replace or drop a view, so a later migration of analytics' BI views
        -- needs them to be salesbook_analytics's too.
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = relation) = 'm' THEN
            EXECUTE format('ALTER MATERIALIZED VIEW %s OWNER TO %I', relation, owner_role);
        ELSE
            EXECUTE format('ALTER TABLE %s OWNER TO %I', relation, owner_role);
        END IF;
    END IF;
    IF table_name = 'outbox' THEN
        FOREACH reader IN ARRAY public.salesbook_outbox_readers(schema_name) LOOP
            -- USAGE only lets the reader name objects of the schema; SELECT on the outbox
            -- is the one table it can actually read.
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema_name, reader);
            EXECUTE format('GRANT SELECT ON %I.outbox TO %I', schema_name, reader);
        END LOOP;
    END IF;
END
$$;

-- Gives a function of a service schema to its role, so the service's own later migrations
-- may replace or drop it.
CREATE OR REPLACE FUNCTION public.salesbook_adopt_function(function_id regprocedure)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    schema_name text := (SELECT p.pronamespace::regnamespace::text FROM pg_proc p
                         WHERE p.oid = function_id);
BEGIN
    IF schema_name NOT IN ('orders', 'payments', 'closing', 'analytics') THEN
        RETURN;
    END IF;
    IF (SELECT p.proowner::regrole::text FROM pg_proc p WHERE p.oid = function_id)
            <> 'salesbook_' || schema_name THEN
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', function_id, 'salesbook_' || schema_name);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION public.salesbook_on_create_table() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT cmd.object_identity AS schema_name
        FROM pg_event_trigger_ddl_commands() AS cmd
        WHERE cmd.command_tag = 'CREATE SCHEMA'
    LOOP
        PERFORM public.salesbook_adopt_schema(created.schema_name);
    END LOOP;
    FOR created IN
        SELECT c.relnamespace::regnamespace::text AS schema_name, c.relname AS table_name
        FROM pg_event_trigger_ddl_commands() AS cmd
        JOIN pg_class AS c ON c.oid = cmd.objid
        WHERE cmd.command_tag IN ('CREATE TABLE', 'CREATE VIEW', 'CREATE MATERIALIZED VIEW')
            AND cmd.object_type IN ('table', 'view', 'materialized view')
    LOOP
        PERFORM public.salesbook_adopt_table(created.schema_name, created.table_name);
    END LOOP;
    FOR created IN
        SELECT cmd.objid AS function_id
        FROM pg_event_trigger_ddl_commands() AS cmd
        WHERE cmd.command_tag = 'CREATE FUNCTION' AND cmd.object_type = 'function'
    LOOP
        PERFORM public.salesbook_adopt_function(created.function_id::regprocedure);
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS salesbook_adopt_tables;
CREATE EVENT TRIGGER salesbook_adopt_tables ON ddl_command_end
    WHEN TAG IN ('CREATE SCHEMA', 'CREATE TABLE', 'CREATE VIEW', 'CREATE MATERIALIZED VIEW',
                 'CREATE FUNCTION')
    EXECUTE FUNCTION public.salesbook_on_create_table();

-- Tables, views and functions that exist already (a database migrated before this file
-- ran) are handed over now.
DO $existing$
DECLARE
    existing record;
BEGIN
    FOR existing IN
        SELECT c.relnamespace::regnamespace::text AS schemaname, c.relname AS tablename
        FROM pg_class c
        WHERE c.relnamespace::regnamespace::text IN ('orders', 'payments', 'closing', 'analytics')
            AND c.relkind IN ('r', 'p', 'v', 'm')
    LOOP
        PERFORM public.salesbook_adopt_table(existing.schemaname, existing.tablename);
    END LOOP;
    FOR existing IN
        SELECT p.oid::regprocedure AS function_id
        FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text IN ('orders', 'payments', 'closing', 'analytics')
    LOOP
        PERFORM public.salesbook_adopt_function(existing.function_id);
    END LOOP;
END
$existing$;
