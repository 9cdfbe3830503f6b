-- 1-minute rollup rows only where a minute holds several readings (issue 17).
--
-- A series reporting once a minute or slower no longer gets a 1-minute rollup row per
-- reading: the reading is the minute, and those rows cost 38 % of ingest's CPU and
-- grew faster than the readings themselves.  Ingest writes minute rows only for
-- series reporting about twice a minute or more (core.rollups.minute_readings); the
-- readers compute the other minutes from the readings, hour by hour, wherever an
-- hour's minute rows do not count all of its readings
-- (db.rollups.minute_partials_query).  Hourly and daily rollups stay as they are, for
-- ever.
--
-- So the 1-minute resolution lives as long as the raw readings do: minute rows go
-- with the readings of their range when retention removes them, and bucket=1m
-- answers nothing where the readings are gone (hours and days do).

-- The minute rows of [lo, hi): series by series through the primary key (the table
-- has no index on time alone).
CREATE FUNCTION smartby_expire_minutes(lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM rollups u USING series s
    WHERE u.series_id = s.id AND u.resolution = '1m' AND u.bucket >= lo AND u.bucket < hi;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE EXECUTE ON FUNCTION smartby_expire_minutes(timestamptz, timestamptz) FROM PUBLIC;

-- The minute rows written before: those of hours that do not hold two readings a
-- minute on average (120 an hour) go, as ingest would not write them now; those of
-- series that report often stay (and are used only where an hour's rows count all of
-- its readings).  Grouped by UTC hour: in a zone with half-hour offsets a local hour
-- may lose half its rows, and is then computed from its readings.
DELETE FROM rollups u
USING (SELECT series_id, date_bin('1 hour', bucket, timestamptz 'epoch') AS hour
       FROM rollups WHERE resolution = '1m'
       GROUP BY 1, 2 HAVING sum(count) < 120) sparse
WHERE u.series_id = sparse.series_id AND u.resolution = '1m'
  AND u.bucket >= sparse.hour AND u.bucket < sparse.hour + interval '1 hour';

-- ... and all of them where retention has removed the readings already
SELECT smartby_expire_minutes('-infinity', raw_dropped_before)
FROM lifecycle_settings WHERE raw_dropped_before IS NOT NULL;

-- Retention removes the minute rows of what it removes (migration 0010's function, with
-- smartby_expire_minutes called where a range goes).
-- One step of raw retention as of `at`: the oldest expired chunk (TimescaleDB) or up
-- to max_rows readings of the oldest expired UTC day (plain PostgreSQL, deleted in
-- batches so that no transaction grows large).  Returns the range it looked at, the
-- readings removed and, when it kept them, why; no row when nothing has expired.
-- Oldest first, and it stops at a range it must keep: everything before
-- raw_dropped_before is gone, everything after it is whole.
CREATE OR REPLACE FUNCTION smartby_expire_readings(at timestamptz, max_rows bigint DEFAULT 100000)
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
            PERFORM smartby_expire_minutes(lo, hi);
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
            PERFORM smartby_expire_minutes(lo, hi);
        END IF;
    END IF;
    RETURN QUERY SELECT lo, hi, n, reason;
END
$$;
