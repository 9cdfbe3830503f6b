-- smartby schema: a narrow model that maps onto OGC SensorThings
-- (sites = Thing + Location, devices = Sensor, metrics = ObservedProperty,
-- series = Datastream, readings = Observation).

CREATE TABLE sites (
    id           text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name         text NOT NULL,
    kind         text NOT NULL
                 CHECK (kind IN ('roadside', 'urban_background', 'building', 'road_section')),
    municipality text NOT NULL,
    lon          double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat          double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    properties   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A device id is one MQTT topic level and the broker user name, hence the
-- restricted alphabet (no + # / or spaces).
CREATE TABLE devices (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    site_id      text REFERENCES sites (id),
    kind         text NOT NULL CHECK (kind IN ('air_quality', 'energy', 'traffic')),
    vendor       text,
    model        text,
    calibration  jsonb NOT NULL DEFAULT '{}'::jsonb,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- what the device last said on its status topic
    online       boolean,
    battery      double precision,
    rssi         double precision,
    last_seen    timestamptz,
    secret_hash  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_idx ON devices (site_id);

CREATE TABLE metrics (
    key            text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,31}$'),
    name           text NOT NULL,
    domain         text NOT NULL CHECK (domain IN ('air_quality', 'weather', 'energy', 'traffic')),
    unit           text NOT NULL,          -- canonical unit, SenML spelling (RFC 8428/8798)
    unit_symbol    text NOT NULL,          -- the same unit as people write it
    definition_uri text NOT NULL,
    min_value      double precision NOT NULL,  -- physical bounds: outside is QC "fail"
    max_value      double precision NOT NULL,
    -- how values combine over time: a gauge is averaged, a count is summed,
    -- a cumulative register is differenced
    value_type     text NOT NULL CHECK (value_type IN ('gauge', 'count', 'cumulative')),
    molar_mass     double precision,       -- g/mol, for ppm/ppb -> ug/m3 of gases
    description    text NOT NULL DEFAULT '',
    CHECK (min_value < max_value)
);

CREATE TABLE series (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  text NOT NULL REFERENCES devices (id),
    metric     text NOT NULL REFERENCES metrics (key),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, metric)
);

-- One row per observation.  (series_id, time) is unique so that a redelivered
-- MQTT message is absorbed by the key.  No foreign key to series: it would cost
-- a lookup per row on the hottest write path, and series rows are never deleted.
-- quality holds QARTOD flags: 1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing.
CREATE TABLE readings (
    time      timestamptz NOT NULL,
    series_id integer NOT NULL,
    value     double precision NOT NULL,
    quality   smallint NOT NULL DEFAULT 2 CHECK (quality IN (1, 2, 3, 4, 9)),
    PRIMARY KEY (series_id, time)
);

-- Every rejected message or record, with the raw bytes, so nothing is lost silently.
CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    device_id   text,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    payload     bytea NOT NULL
);
CREATE INDEX quarantine_received_idx ON quarantine (received_at);
CREATE INDEX quarantine_reason_idx ON quarantine (reason, received_at);

-- Mergeable partial aggregates per series and bucket.  Every column combines by
-- addition, min, max or "earliest/latest wins", so late data and several workers
-- just upsert into the same row.
CREATE TABLE rollups (
    series_id   integer NOT NULL,
    resolution  text NOT NULL CHECK (resolution IN ('1m', '1h', '1d')),
    bucket      timestamptz NOT NULL,
    count       integer NOT NULL,
    good_count  integer NOT NULL,
    sum         double precision NOT NULL,
    sum_sq      double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    first_time  timestamptz NOT NULL,
    first_value double precision NOT NULL,
    last_time   timestamptz NOT NULL,
    last_value  double precision NOT NULL,
    PRIMARY KEY (series_id, resolution, bucket)
);
CREATE INDEX rollups_bucket_idx ON rollups (resolution, bucket);
