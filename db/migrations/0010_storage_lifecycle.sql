-- Storage lifecycle: raw readings kept for SMARTBY_RETENTION_RAW, quarantine for
-- SMARTBY_RETENTION_QUARANTINE, rollups and indicators for ever (db/lifecycle.py).
--
-- The settings live in the database, written by the owner (`smartby db migrate`), so
-- that the ingest workers, which run the retention pass on the Apache edition, may
-- trigger it but never choose what it removes.

CREATE TABLE lifecycle_settings (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    raw_retention        interval CHECK (raw_retention > interval '1 day'),  -- null: for ever
    quarantine_retention interval CHECK (quarantine_retention > interval '0'),  -- null: for ever
    -- every reading before this is gone (retention moves it forward only); a rollup
    -- rebuild or indicator recomputation must not start before it
    raw_dropped_before   timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO lifecycle_settings DEFAULT VALUES;

-- Why the readings in [lo, hi) may not be removed yet, or null when they may.  Their
-- rollups are complete when
--   * no local day overlapping them waits in indicator_days_pending (late data marks
--     its day there; the energy and traffic indicators read raw readings), and
--   * for every series, the hourly rollups of [lo, hi) count exactly its usable
--     (non-FAIL) readings there: ingest merges rollups in the readings' own
--     transaction and a QC revision recomputes its hour, so any difference means a
--     rebuild is due (`smartby rollup rebuild`).
-- lo and hi are whole UTC hours (chunks are whole UTC days), so every hourly bucket
-- is either inside or outside.
CREATE FUNCTION smartby_raw_incomplete(lo timestamptz, hi timestamptz) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pending timestamptz;
    mismatch integer;
BEGIN
    -- a local day lasts at most 25 hours (DST), so one that starts within 25 h before
    -- lo may reach into [lo, hi)
    SELECT day INTO pending FROM indicator_days_pending
    WHERE day < hi AND day > lo - interval '25 hours' ORDER BY day LIMIT 1;
    IF FOUND THEN
        RETURN format('the indicators of the day starting %s wait to be recomputed', pending);
    END IF;
    -- series by series through the primary keys (no index on time alone)
    SELECT s.id INTO mismatch
    FROM series s
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM readings r
                        WHERE r.series_id = s.id AND r.time >= lo AND r.time < hi
                          AND r.quality <> 4) raw
    CROSS JOIN LATERAL (SELECT coalesce(sum(u.count), 0) AS n FROM rollups u
                        WHERE u.series_id = s.id AND u.resolution = '1h'
                          AND u.bucket >= lo AND u.bucket < hi) rolled
    WHERE raw.n <> rolled.n
    ORDER BY s.id LIMIT 1;
    IF FOUND THEN
        RETURN format('the hourly rollups of series %s do not count its readings; run'
                      ' `smartby rollup rebuild` for %s', mismatch, lo);
    END IF;
    RETURN NULL;
END
$$;

-- One step of raw retention as of `at`: the oldest expired chunk (TimescaleDB) or up
-- to max_rows readings of the oldest expired UTC day (plain PostgreSQL, deleted in
-- batches so that no transaction grows large).  Returns the range it looked at, the
-- readings removed and, when it kept them, why; no row when nothing has expired.
-- Oldest first, and it stops at a range it must keep: everything before
-- raw_dropped_before is gone, everything after it is whole.
CREATE FUNCTION smartby_expire_readings(at timestamptz, max_rows bigint DEFAULT 100000)
RETURNS TABLE (range_start timestamptz, range_end timestamptz, removed bigint, kept_because text)
LANGUAGE plpgsql AS $$
DECLARE
    keep interval;
    dropped timestamptz;
    horizon timestamptz;
    lo timestamptz;
    hi timestamptz;
    reason text;
    n bigint := 0;
    hypertable boolean := false;
BEGIN
    SELECT raw_retention, raw_dropped_before INTO keep, dropped FROM lifecycle_settings;
    IF keep IS NULL THEN
        RETURN;
    END IF;
    horizon := at - keep;
    -- (each statement is planned when it first runs: the views are only named where
    -- TimescaleDB is known to be there)
    IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
        SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                       WHERE hypertable_name = 'readings' AND hypertable_schema = 'public')
        INTO hypertable;
    END IF;
    IF hypertable THEN
        SELECT c.range_start, c.range_end INTO lo, hi
        FROM timescaledb_information.chunks c
        WHERE c.hypertable_schema = 'public' AND c.hypertable_name = 'readings'
          AND c.range_end <= horizon
        ORDER BY c.range_start LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        reason := smartby_raw_incomplete(lo, hi);
        IF reason IS NULL THEN
            SELECT count(*) INTO n FROM readings WHERE time >= lo AND time < hi;
            UPDATE lifecycle_settings
            SET raw_dropped_before = greatest(raw_dropped_before, hi), updated_at = now();
            PERFORM drop_chunks('public.readings', older_than => hi, newer_than => lo);
        END IF;
    ELSE
        SELECT min(time) INTO lo FROM readings;
        IF lo IS NULL THEN
            RETURN;
        END IF;
        lo := date_trunc('day', lo, 'UTC');
        hi := lo + interval '1 day';
        IF hi > horizon THEN
            RETURN;
        END IF;
        -- a day already being removed (an earlier batch) was complete when that began
        IF dropped IS NULL OR hi > dropped THEN
            reason := smartby_raw_incomplete(lo, hi);
        END IF;
        IF reason IS NULL THEN
            UPDATE lifecycle_settings
            SET raw_dropped_before = greatest(raw_dropped_before, hi), updated_at = now();
            DELETE FROM readings WHERE ctid = ANY (ARRAY(
                SELECT ctid FROM readings WHERE time >= lo AND time < hi LIMIT max_rows));
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
    END IF;
    RETURN QUERY SELECT lo, hi, n, reason;
END
$$;

-- Up to max_rows quarantined messages older than the retention; returns how many.
CREATE FUNCTION smartby_expire_quarantine(at timestamptz, max_rows bigint DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    keep interval;
    n bigint;
BEGIN
    SELECT quarantine_retention INTO keep FROM lifecycle_settings;
    IF keep IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM quarantine WHERE id = ANY (ARRAY(
        SELECT id FROM quarantine WHERE received_at < at - keep ORDER BY received_at
        LIMIT max_rows));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- What the ingest workers call (as the smartby_writer role, which may not delete
-- readings itself): one step each, as of now(), with the owner's rights and settings.
CREATE FUNCTION smartby_retention_step(max_rows bigint DEFAULT 100000)
RETURNS TABLE (range_start timestamptz, range_end timestamptz, removed bigint, kept_because text)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM smartby_expire_readings(now(), least(max_rows, 1000000))
$$;

CREATE FUNCTION smartby_quarantine_step(max_rows bigint DEFAULT 100000) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT smartby_expire_quarantine(now(), least(max_rows, 1000000))
$$;

-- The same as a TimescaleDB job (community edition: add_job, db/lifecycle.py), run by
-- the job scheduler as the owner: steps until nothing is left, committing after each.
CREATE PROCEDURE smartby_lifecycle_job(job_id integer, config jsonb)
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
END
$$;

-- Functions are executable by everyone unless revoked.
REVOKE EXECUTE ON FUNCTION smartby_raw_incomplete(timestamptz, timestamptz),
    smartby_expire_readings(timestamptz, bigint), smartby_expire_quarantine(timestamptz, bigint),
    smartby_retention_step(bigint), smartby_quarantine_step(bigint) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE smartby_lifecycle_job(integer, jsonb) FROM PUBLIC;
