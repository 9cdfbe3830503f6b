-- Devices as they are (issue 14): device profiles, field aliases, metrics as data, and
-- the radio health of LoRaWAN devices.

-- A device's profile says how it talks (core/profiles): smartby devices are known by
-- their id; the others by a key in their own terms (a Tasmota topic, an ESPHome node,
-- a TTS device id or a DevEUI), unique within the profile.  field_map maps payload
-- fields to metrics for this device ({"SDS0X1/PM2.5": "pm25", "Analog/A0": null});
-- profile_options holds {"timezone": ..., "numeric_strings": ...}.
ALTER TABLE devices
    ADD COLUMN profile text NOT NULL DEFAULT 'smartby'
        CHECK (profile ~ '^[a-z][a-z0-9-]{0,31}$'),
    ADD COLUMN external_id text
        CHECK (external_id IS NULL
               OR (length(external_id) BETWEEN 1 AND 128 AND external_id !~ '[/+#]')),
    ADD COLUMN field_map jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(field_map) = 'object'),
    ADD COLUMN profile_options jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(profile_options) = 'object'),
    ADD CONSTRAINT devices_profile_key CHECK ((profile = 'smartby') = (external_id IS NULL));
CREATE UNIQUE INDEX devices_external_idx ON devices (profile, external_id)
    WHERE external_id IS NOT NULL;

-- New metrics are rows, not migrations (`smartby metrics add`): any domain word, and
-- QC thresholds as data (core/qc.py QcConfig field names; what a row leaves out comes
-- from the built-in defaults for its key, or from its value type).
ALTER TABLE metrics DROP CONSTRAINT metrics_domain_check;
ALTER TABLE metrics ADD CONSTRAINT metrics_domain_check CHECK (domain ~ '^[a-z][a-z_]{0,31}$');
ALTER TABLE metrics ADD COLUMN qc jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(qc) = 'object');

-- What a Tasmota power plug's ENERGY object also measures.
INSERT INTO metrics (key, name, domain, unit, unit_symbol, definition_uri,
                     min_value, max_value, value_type, molar_mass, description)
VALUES
    ('voltage', 'Voltage', 'energy', 'V', 'V',
     'http://qudt.org/vocab/quantitykind/Voltage', 0, 1000, 'gauge', NULL,
     'RMS voltage at a meter or metering plug.'),
    ('current', 'Electric current', 'energy', 'A', 'A',
     'http://qudt.org/vocab/quantitykind/ElectricCurrent', 0, 1000, 'gauge', NULL,
     'RMS current through a meter or metering plug.')
ON CONFLICT (key) DO NOTHING;

-- Vendor field names, once for every device (core/profiles/binding.py): a field (or a
-- field path, "energy/total") in lower case, and what it is — a metric (in `unit` when
-- the payload states none), device health (`health`), or, with neither, a field that
-- is dropped on purpose instead of quarantined.  A device's own field_map comes first.
CREATE TABLE field_aliases (
    field  text PRIMARY KEY CHECK (field = lower(field) AND length(field) BETWEEN 1 AND 128),
    metric text REFERENCES metrics (key) ON UPDATE CASCADE ON DELETE CASCADE,
    health text CHECK (health IN ('battery')),
    unit   text,
    note   text NOT NULL DEFAULT '',
    CHECK (metric IS NULL OR health IS NULL)
);

INSERT INTO field_aliases (field, metric, health, unit, note) VALUES
    -- particulate matter: Tasmota (SDS0X1, PMS5003), sensor.community (P1/P2, SDS_P1/SDS_P2),
    -- ESPHome object ids, LoRaWAN decoders
    ('pm2.5', 'pm25', NULL, NULL, 'Tasmota SDS0X1, PMS5003'),
    ('pm2_5', 'pm25', NULL, NULL, 'ESPHome object id of "PM2.5"'),
    ('pm_2_5', 'pm25', NULL, NULL, 'ESPHome object id of "PM 2.5"'),
    ('p2', 'pm25', NULL, NULL, 'sensor.community'),
    ('sds_p2', 'pm25', NULL, NULL, 'sensor.community'),
    ('p1', 'pm10', NULL, NULL, 'sensor.community'),
    ('sds_p1', 'pm10', NULL, NULL, 'sensor.community'),
    ('pm_10', 'pm10', NULL, NULL, 'ESPHome object id of "PM 10"'),
    ('temp', 'temperature', NULL, NULL, ''),
    ('air_temperature', 'temperature', NULL, NULL, ''),
    ('bme280_temperature', 'temperature', NULL, NULL, 'sensor.community'),
    ('hum', 'humidity', NULL, NULL, ''),
    ('rh', 'humidity', NULL, NULL, ''),
    ('relative_humidity', 'humidity', NULL, NULL, ''),
    ('bme280_humidity', 'humidity', NULL, NULL, 'sensor.community'),
    ('press', 'pressure', NULL, NULL, ''),
    ('air_pressure', 'pressure', NULL, NULL, ''),
    ('bme280_pressure', 'pressure', NULL, 'Pa', 'sensor.community sends pascals'),
    -- a Tasmota power plug's ENERGY object
    ('energy/total', 'energy', NULL, 'kWh', 'Tasmota: the cumulative register'),
    ('energy/power', 'power', NULL, 'W', 'Tasmota'),
    ('energy/voltage', 'voltage', NULL, 'V', 'Tasmota'),
    ('energy/current', 'current', NULL, 'A', 'Tasmota'),
    ('energy/totalstarttime', NULL, NULL, NULL, 'Tasmota: when the register started'),
    ('energy/yesterday', NULL, NULL, NULL, 'Tasmota: derived from the register'),
    ('energy/today', NULL, NULL, NULL, 'Tasmota: derived from the register'),
    ('energy/period', NULL, NULL, NULL, 'Tasmota: derived from the register'),
    ('energy/apparentpower', NULL, NULL, NULL, 'Tasmota: derived'),
    ('energy/reactivepower', NULL, NULL, NULL, 'Tasmota: derived'),
    ('energy/factor', NULL, NULL, NULL, 'Tasmota: derived'),
    ('energy/frequency', NULL, NULL, NULL, 'Tasmota: mains frequency'),
    -- derived or descriptive values Tasmota sensors add
    ('dewpoint', NULL, NULL, NULL, 'Tasmota: derived from temperature and humidity'),
    ('seapressure', NULL, NULL, NULL, 'Tasmota: derived from pressure and altitude'),
    ('id', NULL, NULL, NULL, 'Tasmota: a sensor''s bus address'),
    ('cf1', NULL, NULL, NULL, 'Tasmota PMS5003: factory-calibrated duplicate'),
    ('cf2.5', NULL, NULL, NULL, 'Tasmota PMS5003: factory-calibrated duplicate'),
    ('cf10', NULL, NULL, NULL, 'Tasmota PMS5003: factory-calibrated duplicate'),
    ('pm1', NULL, NULL, NULL, 'no PM1 metric in the catalogue'),
    ('pb0.3', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    ('pb0.5', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    ('pb1', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    ('pb2.5', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    ('pb5', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    ('pb10', NULL, NULL, NULL, 'Tasmota PMS5003: particle counts'),
    -- a LoRaWAN decoder's battery: device health, not a reading.  Without a unit a value
    -- up to 10 is taken as volts and a larger one as a percentage (map the field on the
    -- device to say which).
    ('battery', NULL, 'battery', NULL, ''),
    ('bat', NULL, 'battery', NULL, ''),
    ('batt', NULL, 'battery', NULL, ''),
    ('battery_v', NULL, 'battery', 'V', ''),
    ('battery_voltage', NULL, 'battery', 'V', ''),
    ('batteryvoltage', NULL, 'battery', 'V', 'LoRaWAN codecs write batteryVoltage'),
    ('vbat', NULL, 'battery', 'V', ''),
    ('batv', NULL, 'battery', 'V', ''),
    ('battery_mv', NULL, 'battery', 'mV', ''),
    ('battery_level', NULL, 'battery', '%EL', ''),
    ('batterylevel', NULL, 'battery', '%EL', 'LoRaWAN codecs write batteryLevel'),
    ('battery_percent', NULL, 'battery', '%EL', ''),
    ('battery_pct', NULL, 'battery', '%EL', '');

-- How a LoRaWAN device is heard: per uplink (or status event) the best gateway's RSSI
-- and SNR, how many gateways heard it, and its battery.  Device health, not
-- environmental data: it is kept like raw readings (by time, so retention can drop
-- old chunks) and is never published as observations.  The key absorbs a redelivered
-- uplink as the readings' key does.
CREATE TABLE device_health (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL REFERENCES devices (id),
    rssi        double precision,
    snr         double precision,
    gateways    smallint,
    battery_v   double precision,
    battery_pct double precision,
    PRIMARY KEY (device_id, time)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- a week a chunk: a few thousand LoRaWAN uplinks a day make small chunks
        PERFORM create_hypertable('device_health', by_range('time', INTERVAL '7 days'),
                                  create_default_indexes => FALSE, if_not_exists => TRUE);
    ELSE
        CREATE INDEX IF NOT EXISTS device_health_time_idx ON device_health (time);
    END IF;
END
$$;

-- The broker's role of a device follows its profile and key (devices/broker_plan.py
-- gives a Tasmota device tele/<topic>/SENSOR and .../LWT, an ESPHome node its own
-- topics): a change of either is a change the broker must hear of (migrations 0004,
-- 0012).
DROP TRIGGER devices_registry_changed ON devices;
CREATE TRIGGER devices_registry_changed
AFTER INSERT OR DELETE OR UPDATE OF id, status, secret_hash, client_id, profile, external_id
ON devices
FOR EACH ROW EXECUTE FUNCTION smartby_registry_changed();

-- The services' roles (migration 0011).  A device's profile columns are no secret: the
-- open reads and ingest (which maps topics and fields through them) read them; the
-- registrar writes them with the INSERT it has.  Field aliases are catalogue, read by
-- everyone and written by the owner (`smartby metrics alias`).  Radio health is
-- written by ingest (ON CONFLICT DO NOTHING needs INSERT only) and is open data about
-- the device (issue 14 item 7), so the API reads it.
GRANT SELECT (profile, external_id, field_map, profile_options) ON devices
    TO smartby_reader, smartby_writer;
GRANT SELECT ON field_aliases TO smartby_reader, smartby_writer, smartby_registrar;
GRANT SELECT ON device_health TO smartby_reader;
GRANT INSERT ON device_health TO smartby_writer;
