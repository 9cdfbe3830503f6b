-- TimescaleDB where the server has it, plain PostgreSQL otherwise.
--
-- The extension can only be created when its library is preloaded
-- (shared_preload_libraries); the embedded stack and the timescaledb image both
-- preload it.  Without it, readings stays a plain table with its primary key
-- index, and the platform does retention itself.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

-- One-day chunks: a city's few hundred series at one reading a minute make well
-- under a million rows a day, so a chunk and its index stay small enough to live
-- in memory while being written, and retention can drop whole days.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- No default index on time alone: chunks already partition by time, every
        -- query of ours names its series (served by the primary key), and a second
        -- index cost a third of the ingest rate when measured (bench/ingest.py).
        PERFORM create_hypertable('readings', by_range('time', INTERVAL '1 day'),
                                  create_default_indexes => FALSE, if_not_exists => TRUE);
    ELSE
        CREATE INDEX IF NOT EXISTS readings_time_idx ON readings (time);
    END IF;
END
$$;
