-- The metric catalogue: what smartby measures, in which canonical unit, defined
-- where, and which values are physically possible (outside them a reading is
-- stored with QC flag "fail", never dropped).
--
-- Pollutant definitions are the EEA/Eionet air-quality pollutant vocabulary that
-- European air-quality reporting uses; weather quantities are CF standard names;
-- energy and traffic quantities are QUDT quantity kinds.
INSERT INTO metrics (key, name, domain, unit, unit_symbol, definition_uri,
                     min_value, max_value, value_type, molar_mass, description)
VALUES
    ('pm25', 'PM2.5', 'air_quality', 'ug/m3', 'µg/m³',
     'http://dd.eionet.europa.eu/vocabulary/aq/pollutant/6001', 0, 1000, 'gauge', NULL,
     'Mass concentration of particulate matter of aerodynamic diameter up to 2.5 µm.'),
    ('pm10', 'PM10', 'air_quality', 'ug/m3', 'µg/m³',
     'http://dd.eionet.europa.eu/vocabulary/aq/pollutant/5', 0, 2000, 'gauge', NULL,
     'Mass concentration of particulate matter of aerodynamic diameter up to 10 µm; in Narvik driven by road dust from studded tyres in late winter.'),
    ('no2', 'Nitrogen dioxide', 'air_quality', 'ug/m3', 'µg/m³',
     'http://dd.eionet.europa.eu/vocabulary/aq/pollutant/8', 0, 2000, 'gauge', 46.0055,
     'Mass concentration of NO2, mostly from road traffic.'),
    ('o3', 'Ozone', 'air_quality', 'ug/m3', 'µg/m³',
     'http://dd.eionet.europa.eu/vocabulary/aq/pollutant/7', 0, 1000, 'gauge', 47.9982,
     'Mass concentration of ground-level ozone.'),
    ('so2', 'Sulphur dioxide', 'air_quality', 'ug/m3', 'µg/m³',
     'http://dd.eionet.europa.eu/vocabulary/aq/pollutant/1', 0, 2000, 'gauge', 64.066,
     'Mass concentration of SO2 (shipping and industry near the harbour).'),
    ('temperature', 'Air temperature', 'weather', 'Cel', '°C',
     'http://vocab.nerc.ac.uk/standard_name/air_temperature/', -60, 60, 'gauge', NULL,
     'Air temperature at the sensor.'),
    ('humidity', 'Relative humidity', 'weather', '%RH', '%RH',
     'http://vocab.nerc.ac.uk/standard_name/relative_humidity/', 0, 100, 'gauge', NULL,
     'Relative humidity at the sensor.'),
    ('pressure', 'Air pressure', 'weather', 'hPa', 'hPa',
     'http://vocab.nerc.ac.uk/standard_name/air_pressure/', 850, 1090, 'gauge', NULL,
     'Air pressure at the sensor.'),
    ('energy', 'Active energy imported', 'energy', 'kWh', 'kWh',
     'http://qudt.org/vocab/quantitykind/Energy', 0, 1e10, 'cumulative', NULL,
     'Cumulative register of an electricity meter; a decrease means the meter was reset.'),
    ('power', 'Active power', 'energy', 'W', 'W',
     'http://qudt.org/vocab/quantitykind/ActivePower', -1e7, 1e7, 'gauge', NULL,
     'Instantaneous active power drawn by a building (negative when exporting).'),
    ('vehicle_count', 'Vehicles passing', 'traffic', 'count', 'vehicles',
     'http://qudt.org/vocab/quantitykind/Count', 0, 20000, 'count', NULL,
     'Vehicles counted in the reporting interval, both directions.'),
    ('heavy_vehicle_count', 'Heavy vehicles passing', 'traffic', 'count', 'vehicles',
     'http://qudt.org/vocab/quantitykind/Count', 0, 20000, 'count', NULL,
     'Vehicles longer than 5.6 m counted in the reporting interval (the Norwegian length-class split).'),
    ('speed', 'Mean vehicle speed', 'traffic', 'km/h', 'km/h',
     'http://qudt.org/vocab/quantitykind/Speed', 0, 250, 'gauge', NULL,
     'Mean speed of the vehicles counted in the reporting interval.')
ON CONFLICT (key) DO UPDATE SET
    name = EXCLUDED.name, domain = EXCLUDED.domain, unit = EXCLUDED.unit,
    unit_symbol = EXCLUDED.unit_symbol, definition_uri = EXCLUDED.definition_uri,
    min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value,
    value_type = EXCLUDED.value_type, molar_mass = EXCLUDED.molar_mass,
    description = EXCLUDED.description;
