-- How finely each metric is resolved: exports round values to it (issue 16), so a
-- file says 12.3 µg/m³ rather than 12.299999999999999, and no more digits than the
-- instruments give.  Only what leaves is rounded: readings and rollups keep the
-- value as received.  NULL: not declared (exports keep the shortest exact text).
--
-- The values: reference air-quality monitors and NILU's published series give
-- concentrations to 0.1 µg/m³; weather stations 0.1 °C, 0.1 %RH and 0.1 hPa;
-- electricity meters' registers count whole Wh (0.001 kWh) and power in W; traffic
-- counters count whole vehicles and speed to 0.1 km/h.
ALTER TABLE metrics
    ADD COLUMN resolution double precision CHECK (resolution > 0);

UPDATE metrics m SET resolution = v.resolution
FROM (VALUES
    ('pm25', 0.1), ('pm10', 0.1), ('no2', 0.1), ('o3', 0.1), ('so2', 0.1),
    ('temperature', 0.1), ('humidity', 0.1), ('pressure', 0.1),
    ('energy', 0.001), ('power', 1.0),
    ('vehicle_count', 1.0), ('heavy_vehicle_count', 1.0), ('speed', 0.1)
) AS v (key, resolution)
WHERE m.key = v.key;
