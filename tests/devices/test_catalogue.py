"""The device catalogue: Narvik's file loads and fits the schema, and bad files fail clearly."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import db
from core.errors import SmartbyError
from devices.catalogue import (
    FAULTS,
    Catalogue,
    CatalogueError,
    load_catalogue,
    narvik_catalogue_path,
    parse_catalogue_csv,
    parse_catalogue_yaml,
)
from devices.provision import import_catalogue

MIGRATIONS = Path(db.__file__).with_name("migrations")


def metric_units() -> dict[str, str]:
    """Metric key -> canonical unit, as migration 0003 seeds them."""
    text = (MIGRATIONS / "0003_metric_catalogue.sql").read_text()
    rows = re.findall(r"\(\s*'([a-z0-9_]+)',\s*'[^']*',\s*'[a-z_]+',\s*'([^']+)'", text)
    assert rows, "no metric rows found in migration 0003"
    return dict(rows)


@pytest.fixture(scope="module")
def narvik() -> Catalogue:
    return load_catalogue(narvik_catalogue_path())


def test_narvik_has_the_stations_buildings_and_roads_the_issue_asks_for(narvik: Catalogue) -> None:
    kinds = Counter(device.kind for device in narvik.devices)
    assert narvik.municipality == "Narvik"
    assert kinds == {"air_quality": 10, "energy": 20, "traffic": 8}
    site_kinds = {device.site.kind for device in narvik.of_kind("air_quality")}
    assert site_kinds == {"roadside", "urban_background"}
    assert {device.site.kind for device in narvik.of_kind("energy")} == {"building"}
    assert {device.site.kind for device in narvik.of_kind("traffic")} == {"road_section"}
    buildings = {device.simulation["building_type"] for device in narvik.of_kind("energy")}
    assert {"school", "office", "swimming_hall", "care_home"} <= buildings


def test_every_site_lies_within_narvik_municipality(narvik: Catalogue) -> None:
    # from Ballangen in the south-west to Bjørnfjell at the Swedish border
    for site in narvik.sites:
        assert 68.25 <= site.lat <= 68.70, site
        assert 16.40 <= site.lon <= 18.20, site
    centre = narvik.site("narvik-sentrum")
    assert abs(centre.lat - 68.438) < 0.01
    assert abs(centre.lon - 17.427) < 0.01


def test_every_metric_is_in_the_metric_catalogue_of_migration_0003(narvik: Catalogue) -> None:
    known = metric_units()
    for device in narvik.devices:
        assert set(device.metrics) <= set(known), device.id


def test_payload_forms_and_intervals_follow_the_mqtt_contract(narvik: Catalogue) -> None:
    forms = {kind: Counter(d.payload for d in narvik.of_kind(kind)) for kind in ("air_quality",)}
    assert forms["air_quality"]["senml-cbor"] >= 1
    assert forms["air_quality"]["senml"] >= 1
    assert {d.payload for d in narvik.of_kind("energy")} == {"senml"}
    assert {d.metrics for d in narvik.of_kind("energy")} == {("energy", "power")}
    traffic = narvik.of_kind("traffic")
    assert {d.payload for d in traffic} == {"json"}
    assert all(d.interval_s >= 900 for d in traffic)  # only 15-minute aggregates (privacy)


def test_a_few_devices_carry_each_fault_for_quality_control_to_find(narvik: Catalogue) -> None:
    faults = Counter(device.fault for device in narvik.devices if device.fault)
    assert {"spike", "flat_line", "dropout", "clock_skew"} <= set(faults)
    assert set(faults) <= set(FAULTS)
    assert 4 <= sum(faults.values()) <= 6


def test_id_rules_are_those_of_the_schema_check_constraints() -> None:
    """The catalogue refuses what the database would; both spell the same patterns."""
    schema = (MIGRATIONS / "0001_schema.sql").read_text()
    site_rule, device_rule = re.findall(r"CHECK \(id ~ '\^([^$]+)\$'\)", schema)
    from devices import catalogue

    assert catalogue._SITE_ID.pattern == site_rule
    assert catalogue._DEVICE_ID.pattern == device_rule


GOOD = """\
municipality: Narvik
sites:
  - id: torget
    name: Narvik torg
    kind: urban_background
    lon: 17.4254
    lat: 68.4379
devices:
  - id: aq-1
    site: torget
    kind: air_quality
    metrics: [pm25, no2]
    interval_s: 60
"""


def test_a_minimal_file_gets_defaults_and_immutable_entries() -> None:
    catalogue = parse_catalogue_yaml(GOOD, "small.yaml")
    [device] = catalogue.devices
    assert device.payload == "senml"  # default for air quality
    assert device.site is catalogue.site("torget")
    assert device.vendor is None
    assert device.fault is None
    with pytest.raises(TypeError):
        device.simulation["fault"] = "spike"  # type: ignore[index]
    assert hash(device) == hash(catalogue.device("aq-1"))


def bad(old: str, new: str, base: str = GOOD) -> str:
    assert old in base, old
    return base.replace(old, new)


DEVICE_2 = """
  - id: aq-2
    site: torget
    kind: air_quality
    metrics: [pm25]
    interval_s: 60
"""


@pytest.mark.parametrize(
    ("text", "entry", "problem"),
    [
        (bad("kind: urban_background", "kind: park"), "site 'torget'", "unknown site kind 'park'"),
        (bad("kind: air_quality", "kind: noise"), "device 'aq-1'", "unknown device kind 'noise'"),
        (bad("site: torget", "site: havna"), "device 'aq-1'", "unknown site 'havna'"),
        (bad("id: aq-1", "id: aq/1"), "device 'aq/1'", "bad device id 'aq/1'"),
        (bad("id: aq-1", "id: aq 1"), "device 'aq 1'", "bad device id 'aq 1'"),
        (bad("id: aq-1", "id: aq+"), "device 'aq+'", "bad device id"),
        (bad("id: torget", "id: Torget"), "site 'Torget'", "bad site id 'Torget'"),
        (bad("lat: 68.4379", "lat: 168.4"), "site 'torget'", "lat 168.4 is outside -90..90"),
        (bad("lon: 17.4254", "lon: east"), "site 'torget'", "lon must be a number"),
        (bad("lon: 17.4254", "lon: .nan"), "site 'torget'", "lon must be a number"),
        (GOOD + DEVICE_2.replace("aq-2", "aq-1"), "device 'aq-1'", "duplicate device id"),
        (GOOD + DEVICE_2.replace("aq-2", "AQ-1"), "device 'AQ-1'", "only in upper/lower case"),
        (
            bad("sites:\n", "sites:\n  - {id: torget, name: X, kind: roadside, lon: 1, lat: 2}\n"),
            "site 'torget'",
            "duplicate site id",
        ),
        (bad("[pm25, no2]", "[pm25, NO2]"), "device 'aq-1'", "bad metric key 'NO2'"),
        (bad("[pm25, no2]", "[]"), "device 'aq-1'", "metrics must be a non-empty list"),
        (bad("[pm25, no2]", "[pm25, pm25]"), "device 'aq-1'", "listed twice"),
        (bad("interval_s: 60", "interval_s: 0"), "device 'aq-1'", "interval_s must be between"),
        (bad("interval_s: 60", "interval_s: soon"), "device 'aq-1'", "whole seconds"),
        (
            bad(
                "kind: air_quality\n    metrics: [pm25, no2]", "kind: traffic\n    metrics: [speed]"
            ),
            "device 'aq-1'",
            "at least 900 s (15 minutes, for privacy), not 60 s",
        ),
        (
            bad("interval_s: 60", "interval_s: 60\n    payload: xml"),
            "device 'aq-1'",
            "unknown payload form 'xml'",
        ),
        (
            bad("interval_s: 60", "interval_s: 60\n    simulation: {fualt: spike}"),
            "device 'aq-1'",
            "unknown simulation knob 'fualt'",
        ),
        (
            bad("interval_s: 60", "interval_s: 60\n    simulation: {fault: gremlins}"),
            "device 'aq-1'",
            "simulation.fault must be one of",
        ),
        (
            bad("interval_s: 60", "interval_s: 60\n    simulation: {fault: meter_reset}"),
            "device 'aq-1'",
            "needs an energy meter",
        ),
        (
            bad("interval_s: 60", "interval_s: 60\n    simulation: {wood_burning: 3}"),
            "device 'aq-1'",
            "simulation.wood_burning must be at most 1",
        ),
        (bad("interval_s: 60", "interval_s: 60\n    colour: red"), "device 'aq-1'", "colour"),
    ],
)
def test_a_bad_entry_is_named_with_its_file_line_and_problem(
    text: str, entry: str, problem: str
) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue_yaml(text, "narvik.yaml")
    message = str(caught.value)
    assert message.startswith("narvik.yaml:"), message
    assert re.match(r"narvik\.yaml:\d+: ", message), message  # the entry's line
    assert entry in message, message
    assert problem in message, message
    assert isinstance(caught.value, SmartbyError)  # the CLI prints it as one line


def test_the_line_points_at_the_offending_entry() -> None:
    text = GOOD + DEVICE_2.replace("site: torget", "site: nowhere")
    with pytest.raises(CatalogueError, match=r"^narvik\.yaml:15: device 'aq-2': unknown site"):
        parse_catalogue_yaml(text, "narvik.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("municipality: Narvik\nsites: [\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("sites: []\ndevices: []\n", "municipality must be given"),
        (GOOD + "owner: kommunen\n", "unknown top-level key(s) owner"),
        ("municipality: Narvik\nsites: torget\n", "sites must be a list"),
    ],
)
def test_a_bad_file_says_what_is_wrong_with_it(text: str, problem: str) -> None:
    with pytest.raises(CatalogueError, match=re.escape(problem)):
        parse_catalogue_yaml(text, "x.yaml")


def test_load_catalogue_names_a_missing_or_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"missing\.yaml: cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    (tmp_path / "devices.json").write_text("{}")
    with pytest.raises(CatalogueError, match=r"\.yaml, \.yml or \.csv"):
        load_catalogue(tmp_path / "devices.json")
    (tmp_path / "other.yaml").write_text(GOOD)
    with pytest.raises(CatalogueError, match="for 'Narvik', not 'Tromsø'"):
        load_catalogue(tmp_path / "other.yaml", municipality="Tromsø")


CSV = """\
id,site_id,site_name,site_kind,lon,lat,kind,vendor,model,metrics,interval_s,payload,fault
aq-1,torget,Narvik torg,urban_background,17.4254,68.4379,air_quality,Airly,PM,pm25;no2,60,,
aq-2,torget,Narvik torg,urban_background,17.4254,68.4379,air_quality,,,pm10,300,senml-cbor,spike
tc-1,kongens-gate,Kongens gate,road_section,17.4283,68.4392,traffic,,,vehicle_count;speed,900,,
"""


def test_a_csv_catalogue_has_one_device_a_row_with_its_site_inline(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(CSV)
    catalogue = load_catalogue(path, municipality="Narvik")
    assert [site.id for site in catalogue.sites] == ["torget", "kongens-gate"]
    assert [device.id for device in catalogue.devices] == ["aq-1", "aq-2", "tc-1"]
    aq1, aq2, tc1 = catalogue.devices
    assert aq1.metrics == ("pm25", "no2")
    assert aq1.vendor == "Airly"
    assert aq1.payload == "senml"
    assert aq2.payload == "senml-cbor"
    assert aq2.fault == "spike"
    assert aq2.interval_s == 300
    assert aq1.site is aq2.site
    assert tc1.payload == "json"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (CSV.replace("17.4254,68.4379,air_quality,,", "17.5,68.4379,air_quality,,"), ":3: site"),
        (CSV.replace(",lat,", ",latitude,"), "missing column(s) lat"),
        (CSV.replace("pm10,300", "pm10,soon"), "devices.csv:3: device 'aq-2': interval_s"),
        (CSV.replace(",900,", ",60,"), "devices.csv:4: device 'tc-1'"),
    ],
)
def test_a_bad_csv_row_is_named_by_its_line(text: str, problem: str) -> None:
    with pytest.raises(CatalogueError, match=re.escape(problem)):
        parse_catalogue_csv(text, "devices.csv", municipality="Narvik")


def test_a_csv_without_municipality_needs_one_given() -> None:
    with pytest.raises(CatalogueError, match="no municipality"):
        parse_catalogue_csv(CSV, "devices.csv")
    with_column = CSV.replace("payload,fault\n", "payload,fault,municipality\n", 1)
    with_column = "\n".join(
        line + ",Narvik" if i else line for i, line in enumerate(with_column.splitlines())
    )
    assert parse_catalogue_csv(with_column, "devices.csv").municipality == "Narvik"


TASMOTA = """
  - id: aq-tasmota
    site: torget
    kind: air_quality
    metrics: [pm25, pm10]
    interval_s: 300
    profile: tasmota
    topic: tasmota_A1B2C3
    timezone: Europe/Oslo
    fields:
      SDS0X1/PM2.5: pm25
      Analog/A0: null
      vbat: {health: battery, unit: mV}
"""


def test_devices_of_other_profiles_carry_their_topic_field_map_and_options() -> None:
    catalogue = parse_catalogue_yaml(GOOD + TASMOTA, "narvik.yaml")
    smartby, tasmota = catalogue.devices
    assert smartby.profile == "smartby"
    assert smartby.binding.key is None
    assert tasmota.profile == "tasmota"
    assert tasmota.binding.key == "tasmota_A1B2C3"
    assert tasmota.binding.timezone == "Europe/Oslo"
    assert tasmota.binding.fields["sds0x1/pm2.5"].metric == "pm25"
    assert tasmota.binding.fields["analog/a0"].ignored
    assert tasmota.binding.fields["vbat"].health == "battery"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("profile: tasmota", "profile: zigbee", "unknown profile 'zigbee'"),
        ("    topic: tasmota_A1B2C3\n", "", "needs its Tasmota topic"),
        ("topic: tasmota_A1B2C3", "topic: tele/x", "one MQTT topic level"),
        ("timezone: Europe/Oslo", "timezone: Oslo/Narvik", "unknown time zone 'Oslo/Narvik'"),
        ("SDS0X1/PM2.5: pm25", "SDS0X1/PM2.5: PM25", "'PM25' is not a metric key"),
        ("unit: mV", "unit: Cel", "a battery is in volts"),
        ("    timezone: Europe/Oslo\n", "    numeric_strings: maybe\n", "true or false"),
    ],
)
def test_a_bad_profile_setting_is_named_with_the_entrys_line(
    old: str, new: str, problem: str
) -> None:
    text = GOOD + bad(old, new, TASMOTA)
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue_yaml(text, "narvik.yaml")
    message = str(caught.value)
    assert message.startswith("narvik.yaml:15: device 'aq-tasmota': "), message
    assert problem in message, message


def test_two_devices_cannot_share_a_profiles_topic() -> None:
    twin = TASMOTA.replace("id: aq-tasmota", "id: aq-twin")
    with pytest.raises(
        CatalogueError,
        match=r"^narvik\.yaml:28: device 'aq-twin': tasmota topic 'tasmota_A1B2C3' is device "
        r"'aq-tasmota''s already",
    ):
        parse_catalogue_yaml(GOOD + TASMOTA + twin, "narvik.yaml")


def test_a_csv_row_names_its_profile_topic_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(
        "id,site_id,site_name,site_kind,lon,lat,kind,metrics,interval_s,profile,topic,fields\n"
        'esp-1,torget,Torget,urban_background,17.42,68.43,air_quality,pm25,60,esphome,balcony,"'
        '{""pm_2_5"": ""pm25""}"\n'
    )
    [device] = load_catalogue(path, municipality="Narvik").devices
    assert (device.profile, device.binding.key) == ("esphome", "balcony")
    assert device.binding.fields["pm_2_5"].metric == "pm25"


def test_importing_a_catalogue_registers_profiles_and_updates_them_on_reimport(
    conn: psycopg.Connection,
) -> None:
    from devices.provision import import_catalogue

    first = import_catalogue(conn, parse_catalogue_yaml(GOOD + TASMOTA, "narvik.yaml"))
    assert sorted(first.devices_created) == ["aq-1", "aq-tasmota"]
    assert first.devices_rekeyed == []
    changed = GOOD + TASMOTA.replace("tasmota_A1B2C3", "tasmota_D4E5F6")
    again = import_catalogue(conn, parse_catalogue_yaml(changed, "narvik.yaml"))
    assert again.devices_existing == 2
    assert again.devices_rekeyed == ["aq-tasmota"]  # its broker role must follow
    row = conn.execute(
        "SELECT profile, external_id, field_map -> 'vbat', profile_options FROM devices"
        " WHERE id = 'aq-tasmota'"
    ).fetchone()
    assert row == (
        "tasmota",
        "tasmota_D4E5F6",
        {"health": "battery", "unit": "mV"},
        {"timezone": "Europe/Oslo"},
    )


def test_a_catalogue_declares_how_finely_its_instruments_resolve_metrics(
    narvik: Catalogue,
) -> None:
    """``metrics: {key: {resolution: step}}``: exports round to it (issue 16)."""
    assert narvik.resolutions["pm25"] == 0.1
    assert narvik.resolutions["energy"] == 0.001
    declared = parse_catalogue_yaml("metrics:\n  pm10: {resolution: 1}\n" + GOOD, "small.yaml")
    assert dict(declared.resolutions) == {"pm10": 1.0}
    assert parse_catalogue_yaml(GOOD, "small.yaml").resolutions == {}
    for text, problem in (
        ("metrics:\n  pm10: {resolution: 0}\n", "positive number"),
        ("metrics:\n  pm10: {resolution: fine}\n", "positive number"),
        ("metrics:\n  pm10: 0.1\n", "must be {resolution: number}"),
        ("metrics:\n  PM10: {resolution: 1}\n", "bad metric key"),
    ):
        with pytest.raises(CatalogueError, match=re.escape(problem)):
            parse_catalogue_yaml(text + GOOD, "small.yaml")


def test_importing_a_catalogue_writes_its_resolutions_into_the_metric_catalogue(
    conn: psycopg.Connection,
) -> None:
    declared = parse_catalogue_yaml("metrics:\n  pm10: {resolution: 1}\n" + GOOD, "small.yaml")
    try:
        result = import_catalogue(conn, declared)
        assert result.resolutions == 1
        assert conn.execute("SELECT resolution FROM metrics WHERE key = 'pm10'").fetchone() == (
            1.0,
        )
    finally:  # the metric catalogue is shared by the tests: put migration 0008's back
        conn.execute("UPDATE metrics SET resolution = 0.1 WHERE key = 'pm10'")
    unknown = parse_catalogue_yaml("metrics:\n  benzene: {resolution: 0.1}\n" + GOOD, "x.yaml")
    conn.execute("DELETE FROM devices")
    conn.execute("DELETE FROM sites")
    with pytest.raises(SmartbyError, match="no metric 'benzene'"):
        import_catalogue(conn, unknown)
    assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)  # all or nothing
