-- Device health (migration 0013: a LoRaWAN uplink's radio metadata, battery levels) is
-- kept for its own retention, SMARTBY_RETENTION_HEALTH (400 days by default: a year
-- of battery and signal to compare a season with the same one last year), instead of
-- growing for ever beside readings that may expire.  The same shape as quarantine's
-- (migration 0010): the owner decides it in lifecycle_settings, a function removes a
-- batch, and the writer role may trigger a step but never choose the age.
ALTER TABLE lifecycle_settings
    ADD COLUMN health_retention interval DEFAULT interval '400 days'
        CHECK (health_retention > interval '0');  -- null: for ever

CREATE FUNCTION smartby_expire_health(at timestamptz, max_rows bigint DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    keep interval;
    n bigint;
BEGIN
    SELECT health_retention INTO keep FROM lifecycle_settings;
    IF keep IS NULL THEN
        RETURN 0;
    END IF;
    -- by the key, not ctid: on a hypertable a ctid names a row only within its chunk
    DELETE FROM device_health h
    USING (SELECT device_id, time FROM device_health WHERE time < at - keep
           ORDER BY time LIMIT max_rows) old
    WHERE h.device_id = old.device_id AND h.time = old.time;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION smartby_health_step(max_rows bigint DEFAULT 100000) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT smartby_expire_health(now(), least(max_rows, 1000000))
$$;

-- The community edition's scheduled job (migration 0010) removes device health too.
CREATE OR REPLACE PROCEDURE smartby_lifecycle_job(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    step record;
    removed bigint;
BEGIN
    LOOP
        SELECT * INTO step FROM smartby_expire_readings(now());
        EXIT WHEN NOT FOUND OR step.kept_because IS NOT NULL OR step.removed = 0;
        COMMIT;
    END LOOP;
    IF step.kept_because IS NOT NULL THEN
        RAISE WARNING 'smartby retention keeps % .. %: %',
            step.range_start, step.range_end, step.kept_because;
    END IF;
    LOOP
        removed := smartby_expire_quarantine(now());
        COMMIT;
        EXIT WHEN removed = 0;
    END LOOP;
    LOOP
        removed := smartby_expire_health(now());
        COMMIT;
        EXIT WHEN removed = 0;
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION smartby_expire_health(timestamptz, bigint),
    smartby_health_step(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smartby_health_step(bigint) TO smartby_writer;
