-- Indicator tables: what citizens, the climate office and dashboards read directly.
-- Filled by core.indicator_store (a periodic job in the ingest workers, and
-- `smartby indicators update`), one local day at a time, from readings and rollups.

-- Local days (Europe/Oslo by default) that received readings since their indicators
-- were last computed.  Ingest adds the days of each batch in the batch's transaction;
-- the indicator job takes them out in the transaction that recomputes them, so late
-- data and several workers lose no update.
CREATE TABLE indicator_days_pending (
    day       timestamptz PRIMARY KEY,   -- local midnight of the day
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- EEA European Air Quality Index per station (site) and hour, from the hourly means
-- of the rollups (FAIL readings are not in them).  The hour is the start of the
-- averaging hour.  level: 1 Good, 2 Fair, 3 Moderate, 4 Poor, 5 Very poor,
-- 6 Extremely poor; dominant: the pollutant that set it.  The means used are kept so
-- the index can be checked and explained.
CREATE TABLE aqi_hourly (
    site_id    text NOT NULL REFERENCES sites (id),
    hour       timestamptz NOT NULL,
    level      smallint NOT NULL CHECK (level BETWEEN 1 AND 6),
    dominant   text NOT NULL REFERENCES metrics (key),
    pm25       double precision,
    pm10       double precision,
    no2        double precision,
    o3         double precision,
    so2        double precision,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, hour)
);
CREATE INDEX aqi_hourly_hour_idx ON aqi_hourly (hour);

-- Energy per building (site) and hour / local day: kWh from cumulative registers
-- (reset-aware) or, for meters without one, from power by the trapezoidal rule.
-- coverage: the share of the bucket that meter readings covered (1 = all of it, per
-- meter); co2e_kg uses the grid factor in force when the row was computed.
CREATE TABLE energy_hourly (
    site_id        text NOT NULL REFERENCES sites (id),
    hour           timestamptz NOT NULL,
    kwh            double precision NOT NULL,
    co2e_kg        double precision NOT NULL,
    coverage       double precision NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, hour)
);
CREATE INDEX energy_hourly_hour_idx ON energy_hourly (hour);

CREATE TABLE energy_daily (
    site_id        text NOT NULL REFERENCES sites (id),
    day            date NOT NULL,         -- the local date
    day_start      timestamptz NOT NULL,  -- its local midnight (23- or 25-hour days at DST)
    kwh            double precision NOT NULL,
    co2e_kg        double precision NOT NULL,
    coverage       double precision NOT NULL,
    grid_factor_g_per_kwh double precision NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day)
);
CREATE INDEX energy_daily_start_idx ON energy_daily (day_start);

-- Traffic per counter (device) and hour / local day.  Only aggregates of at least 15
-- minutes exist here (privacy, DESIGN.md).  mean_speed_kmh is weighted by vehicles;
-- heavy_share = heavy vehicles / vehicles; coverage = share of the bucket reported.
CREATE TABLE traffic_hourly (
    device_id      text NOT NULL REFERENCES devices (id),
    site_id        text REFERENCES sites (id),
    hour           timestamptz NOT NULL,
    volume         double precision NOT NULL,
    heavy_volume   double precision,
    mean_speed_kmh double precision,
    heavy_share    double precision,
    coverage       double precision NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, hour)
);
CREATE INDEX traffic_hourly_hour_idx ON traffic_hourly (hour);

CREATE TABLE traffic_daily (
    device_id      text NOT NULL REFERENCES devices (id),
    site_id        text REFERENCES sites (id),
    day            date NOT NULL,
    day_start      timestamptz NOT NULL,
    volume         double precision NOT NULL,
    heavy_volume   double precision,
    mean_speed_kmh double precision,
    heavy_share    double precision,
    coverage       double precision NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, day)
);
CREATE INDEX traffic_daily_start_idx ON traffic_daily (day_start);

-- Average daily traffic per counter: the mean volume of its fully reported days in
-- the last 365 days (a partly reported day would pull the mean down).
CREATE VIEW traffic_adt AS
SELECT device_id,
       site_id,
       avg(volume)        AS vehicles_per_day,
       count(*)           AS full_days,
       min(day)           AS first_day,
       max(day)           AS last_day,
       sum(heavy_volume) / nullif(sum(volume) FILTER (WHERE heavy_volume IS NOT NULL), 0)
                          AS heavy_share
FROM traffic_daily
WHERE coverage >= 0.999 AND day_start >= now() - interval '365 days'
GROUP BY device_id, site_id;
