-- Least privilege.  Migrations run as the owner (the database's superuser or owner);
-- the services log in as members of three group roles (NOLOGIN, so nobody logs in as
-- them directly; `smartby db roles` makes the logins):
--   smartby_writer    ingest: writes readings, rollups, indicators, quarantine and
--                     warnings; no DDL, no DELETE on readings, never a secret
--   smartby_reader    the API and Grafana: SELECT on the published tables, never a
--                     secret hash or a quarantined payload
--   smartby_registrar the API's admin routes (behind an API key): the device registry
-- A later migration that adds a table grants on it here-alike: nothing is granted by
-- default (tests/db/test_roles.py fails for a table without a decision).
-- Roles belong to the cluster, so they are created only when missing.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['smartby_writer', 'smartby_reader', 'smartby_registrar'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
    -- temporary tables are how ingest stages a batch (rollups_staging, readings_staging)
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO smartby_writer',
                   current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO smartby_reader, smartby_registrar',
                   current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO smartby_writer, smartby_reader, smartby_registrar;

-- ---------------------------------------------------------------- smartby_reader
GRANT SELECT ON sites, metrics, series, readings, rollups, aqi_hourly, energy_hourly,
    energy_daily, traffic_hourly, traffic_daily, traffic_adt, warning_stations,
    warning_episodes, warning_messages, lifecycle_settings, schema_migrations
    TO smartby_reader;
-- devices without secret_hash; quarantine without the raw payloads
GRANT SELECT (id, site_id, kind, vendor, model, calibration, status, online, battery, rssi,
              last_seen, created_at, updated_at) ON devices TO smartby_reader;
GRANT SELECT (id, received_at, topic, device_id, reason, detail) ON quarantine
    TO smartby_reader;

-- ---------------------------------------------------------------- smartby_writer
GRANT SELECT ON sites, metrics, lifecycle_settings TO smartby_writer;
GRANT SELECT (id, site_id, kind, vendor, model, calibration, status, online, battery, rssi,
              last_seen, created_at, updated_at) ON devices TO smartby_writer;
GRANT UPDATE (online, battery, rssi, last_seen, updated_at) ON devices TO smartby_writer;
GRANT SELECT, INSERT ON series TO smartby_writer;
-- a later reading can only make a stored reading's QC flag worse: quality alone
GRANT SELECT, INSERT ON readings TO smartby_writer;
GRANT UPDATE (quality) ON readings TO smartby_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON rollups TO smartby_writer;
GRANT INSERT ON quarantine TO smartby_writer;
GRANT SELECT, INSERT, DELETE ON indicator_days_pending, aqi_hourly, energy_hourly,
    energy_daily, traffic_hourly, traffic_daily TO smartby_writer;
-- the indicator job takes a day with SELECT ... FOR UPDATE SKIP LOCKED, which needs it
GRANT UPDATE ON indicator_days_pending TO smartby_writer;
GRANT SELECT, INSERT, UPDATE ON ingest_sessions TO smartby_writer;
GRANT SELECT, INSERT, DELETE ON ingest_deliveries TO smartby_writer;
GRANT SELECT, INSERT, UPDATE ON warning_stations, warning_episodes, warning_messages
    TO smartby_writer;
-- retention as the owner decided it (migration 0010): trigger it, never choose it
GRANT EXECUTE ON FUNCTION smartby_retention_step(bigint), smartby_quarantine_step(bigint)
    TO smartby_writer;

-- ---------------------------------------------------------------- smartby_registrar
GRANT SELECT ON sites, metrics, series TO smartby_registrar;
GRANT SELECT, INSERT ON devices TO smartby_registrar;
GRANT UPDATE (status, secret_hash, updated_at) ON devices TO smartby_registrar;
