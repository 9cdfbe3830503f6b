"""The documents the API serves, as pydantic models for the OpenAPI description.

Routes serialise plain dicts directly (`api.responses`); these models say what those
dicts hold, with descriptions and examples, and the schema tests (Schemathesis)
check every response against them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.licence import LICENSE_ID, NLOD_URL
from api.params import DEVICE_ID_PATTERN, SITE_ID_PATTERN

_ATTRIBUTION_EXAMPLE = (
    "Contains data under the Norwegian licence for Open Government data (NLOD) "
    "distributed by Narvik"
)


class Meta(BaseModel):
    """The licence of the data and the attribution it asks for (NLOD 2.0 §4)."""

    license: str = Field(examples=[LICENSE_ID])
    license_url: str = Field(examples=[NLOD_URL])
    attribution: str = Field(examples=[_ATTRIBUTION_EXAMPLE])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Bad request parameter"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["parameter 'limit': Input should be less than or equal to 10000"])
    instance: str | None = None
    parameter: str | None = Field(
        default=None, description="The query or path parameter at fault, when there is one."
    )


class Link(BaseModel):
    rel: str
    href: str
    title: str


class Root(BaseModel):
    title: str
    description: str
    version: str
    links: list[Link]
    meta: Meta


# ---------------------------------------------------------------------- catalogue


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(
        description="[longitude, latitude], WGS 84 (RFC 7946 §3.1.2)", examples=[[17.4272, 68.4385]]
    )


class SiteProperties(BaseModel):
    name: str = Field(examples=["Narvik sentrum, Kongens gate"])
    kind: str = Field(
        description="roadside, urban_background, building or road_section", examples=["roadside"]
    )
    municipality: str = Field(examples=["Narvik"])
    devices: list[str] = Field(description="Ids of the devices at the site.")
    attributes: dict[str, Any] = Field(description="Free-form facts about the site.")


class SiteFeature(BaseModel):
    """A site (SensorThings Thing + Location) as a GeoJSON Feature."""

    type: Literal["Feature"]
    id: str = Field(examples=["narvik-sentrum"])
    geometry: Point
    properties: SiteProperties


class SiteFeatureDocument(SiteFeature):
    license: str = Field(examples=[LICENSE_ID])
    license_url: str
    attribution: str


class SiteCollection(BaseModel):
    """Sites as a GeoJSON FeatureCollection; licence and attribution are foreign
    members (RFC 7946 §6.1)."""

    type: Literal["FeatureCollection"]
    features: list[SiteFeature]
    license: str = Field(examples=[LICENSE_ID])
    license_url: str = Field(examples=[NLOD_URL])
    attribution: str = Field(examples=[_ATTRIBUTION_EXAMPLE])


class Device(BaseModel):
    """A device's public fields (SensorThings Sensor)."""

    id: str = Field(examples=["aq-sentrum"])
    site_id: str | None = Field(examples=["narvik-sentrum"])
    kind: str = Field(description="air_quality, energy or traffic", examples=["air_quality"])
    vendor: str | None
    model: str | None
    status: str = Field(description="active or disabled", examples=["active"])
    online: bool | None = Field(description="What the device last said on its status topic.")
    battery: float | None
    rssi: float | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime
    metrics: list[str] = Field(examples=[["no2", "pm10", "pm25"]])


class DeviceList(BaseModel):
    data: list[Device]
    meta: Meta


class DeviceDocument(BaseModel):
    data: Device
    meta: Meta


class Metric(BaseModel):
    """What is measured (SensorThings ObservedProperty)."""

    key: str = Field(examples=["pm25"])
    name: str = Field(examples=["PM2.5"])
    domain: str = Field(examples=["air_quality"])
    unit: str = Field(description="Canonical unit, SenML spelling (RFC 8428)", examples=["ug/m3"])
    unit_symbol: str = Field(examples=["µg/m³"])
    definition_uri: str = Field(
        examples=["http://dd.eionet.europa.eu/vocabulary/aq/pollutant/6001"]
    )
    min_value: float = Field(description="Physical lower bound; below it a reading fails QC.")
    max_value: float = Field(description="Physical upper bound; above it a reading fails QC.")
    value_type: str = Field(
        description="gauge (averaged), count (summed) or cumulative (a register)",
        examples=["gauge"],
    )
    molar_mass: float | None = Field(description="g/mol, for gases given in ppm or ppb.")
    resolution: float | None = Field(
        description="How finely the metric is resolved, in its unit: bulk exports round "
        "values to it (the API serves them as stored). Null: not declared.",
        examples=[0.1],
    )
    description: str = Field(description="What the metric is, in a sentence or two.")


class MetricList(BaseModel):
    data: list[Metric]
    meta: Meta


class MetricDocument(BaseModel):
    data: Metric
    meta: Meta


class Series(BaseModel):
    """One device × one metric (SensorThings Datastream)."""

    id: int = Field(examples=[17])
    device_id: str = Field(examples=["aq-sentrum"])
    site_id: str | None = Field(examples=["narvik-sentrum"])
    kind: str = Field(examples=["air_quality"])
    metric: str = Field(examples=["pm25"])
    unit: str = Field(examples=["ug/m3"])
    unit_symbol: str = Field(examples=["µg/m³"])
    created_at: datetime


class SeriesList(BaseModel):
    data: list[Series]
    meta: Meta


class Latest(BaseModel):
    """A series' latest value."""

    series_id: int
    device_id: str
    site_id: str | None
    kind: str
    metric: str
    unit: str
    time: datetime = Field(
        description="Time of the reading; for an hourly aggregate, the start of its hour."
    )
    value: float
    quality: int | None = Field(
        description="QARTOD flag of the reading: 1 good, 2 not evaluated, 3 suspect, "
        "4 fail, 9 missing; null for an aggregate."
    )
    aggregate: Literal["raw", "1h"] = Field(
        description="raw: one reading. 1h: the latest complete hour (traffic metrics are "
        "only published in aggregates of 15 minutes or more): the sum for counts, the "
        "mean otherwise."
    )


class LatestList(BaseModel):
    data: list[Latest]
    meta: Meta


# ---------------------------------------------------------------------- time series


class AggregatePoint(BaseModel):
    """One bucket of a series, from the rollups.  FAIL readings are not in it."""

    time: datetime = Field(description="Start of the bucket (days start at local midnight).")
    end: datetime = Field(description="End of the bucket, exclusive (a day is 23–25 h).")
    count: int = Field(description="Usable readings (QC good, not evaluated or suspect).")
    good_count: int = Field(description="Of which good or not evaluated.")
    suspect_count: int = Field(description="Of which suspect.")
    sum: float
    mean: float
    std: float = Field(description="Population standard deviation.")
    min: float
    max: float
    first: float = Field(description="The bucket's first usable reading.")
    last: float = Field(description="The bucket's last usable reading.")
    coverage: float | None = Field(
        description="Readings / expected readings at the series' usual reporting interval "
        "(null when the interval cannot be told from the data)."
    )


class RawPoint(BaseModel):
    """One reading."""

    time: datetime
    series_id: int
    value: float
    quality: int = Field(
        description="QARTOD flag: 1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing."
    )


class DataPage(BaseModel):
    """A page of a time series; follow ``next`` until it is null."""

    series: list[int] = Field(description="The series the values come from.")
    metric: str
    unit: str
    bucket: Literal["raw", "1m", "1h", "1d"]
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[AggregatePoint | RawPoint]
    next: str | None = Field(description="URL of the next page, null on the last.")
    meta: Meta


# ---------------------------------------------------------------------- indicators


class AqiStation(BaseModel):
    """A station's latest hourly European Air Quality Index (EEA, 2024 bands)."""

    site_id: str
    site_name: str
    lon: float
    lat: float
    hour: datetime = Field(description="Start of the averaging hour.")
    level: int = Field(ge=1, le=6, description="1 Good … 6 Extremely poor.")
    label: str = Field(examples=["Fair"])
    dominant: str = Field(description="The pollutant that set the level.", examples=["pm10"])
    pm25: float | None = Field(description="Hourly means used, µg/m³.")
    pm10: float | None
    no2: float | None
    o3: float | None
    so2: float | None


class AqiNow(BaseModel):
    data: list[AqiStation]
    meta: Meta


class AqiHour(BaseModel):
    site_id: str
    hour: datetime
    level: int = Field(ge=1, le=6)
    label: str
    dominant: str
    pm25: float | None
    pm10: float | None
    no2: float | None
    o3: float | None
    so2: float | None


class AqiHistory(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[AqiHour]
    next: str | None
    meta: Meta


class EnergyHour(BaseModel):
    site_id: str
    hour: datetime
    kwh: float
    co2e_kg: float
    coverage: float = Field(description="Share of the hour the meter readings covered.")


class EnergyDay(BaseModel):
    site_id: str
    day: date = Field(description="The local date.")
    day_start: datetime
    kwh: float
    co2e_kg: float
    coverage: float
    grid_factor_g_per_kwh: float


class EnergyHourly(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[EnergyHour]
    next: str | None
    meta: Meta


class EnergyDaily(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[EnergyDay]
    next: str | None
    meta: Meta


class TrafficHour(BaseModel):
    device_id: str
    site_id: str | None
    hour: datetime
    volume: float = Field(description="Vehicles, both directions.")
    heavy_volume: float | None
    mean_speed_kmh: float | None = Field(description="Weighted by vehicles.")
    heavy_share: float | None
    coverage: float


class TrafficDay(BaseModel):
    device_id: str
    site_id: str | None
    day: date
    day_start: datetime
    volume: float
    heavy_volume: float | None
    mean_speed_kmh: float | None
    heavy_share: float | None
    coverage: float


class TrafficHourly(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[TrafficHour]
    next: str | None
    meta: Meta


class TrafficDaily(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[TrafficDay]
    next: str | None
    meta: Meta


class TrafficAdt(BaseModel):
    device_id: str
    site_id: str | None
    vehicles_per_day: float = Field(description="Mean volume of the fully reported days.")
    full_days: int
    first_day: date
    last_day: date
    heavy_share: float | None


class TrafficAdtList(BaseModel):
    data: list[TrafficAdt]
    meta: Meta


# ---------------------------------------------------------------------- admin


class NewDevice(BaseModel):
    """A device to register; its secret is generated and shown once."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=DEVICE_ID_PATTERN, examples=["aq-havna"])
    site_id: str = Field(pattern=SITE_ID_PATTERN, examples=["narvik-sentrum"])
    kind: Literal["air_quality", "energy", "traffic"]
    vendor: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    calibration: dict[str, Any] | None = None
    client_id: str | None = Field(
        default=None,
        pattern=r"^[!-~]{1,128}$",
        description="The MQTT client id the device's firmware uses (default: its id); "
        "the broker lets its account in under this id only.",
        examples=["DVES_4F2A1C"],
    )
    profile: str = Field(
        default="smartby",
        description="How the device talks (README, device profiles): smartby, tasmota, "
        "esphome, ttn-v3 or chirpstack-v4.",
        examples=["tasmota"],
    )
    topic: str | None = Field(
        default=None,
        max_length=200,
        description="How ingest knows a device of another profile: its Tasmota topic, "
        "ESPHome node name, or LoRaWAN device id / DevEUI. None for smartby devices.",
        examples=["tasmota_4F2A1C"],
    )
    fields: dict[str, Any] | None = Field(
        default=None,
        description="Its own field map, as in the catalogue YAML: a payload field to a "
        "metric key, {metric, unit}, or null to ignore the field.",
        examples=[{"SDS0X1/PM2.5": "pm25", "BME280/Pressure": {"metric": "pressure"}}],
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of the device's local times (Tasmota sends no offset).",
        examples=["Europe/Oslo"],
    )
    numeric_strings: bool | None = Field(
        default=None,
        description="Whether numbers written as text count (default: the profile's choice).",
    )


class AdminDevice(BaseModel):
    """The registry's view of a device (never the secret or its hash)."""

    id: str
    site_id: str | None
    kind: str
    vendor: str | None
    model: str | None
    calibration: dict[str, Any]
    status: str
    online: bool | None
    battery: float | None
    rssi: float | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime
    has_secret: bool
    metrics: list[str]


class AdminDeviceList(BaseModel):
    data: list[AdminDevice]


class AdminDeviceDocument(BaseModel):
    data: AdminDevice
    broker: str | None = Field(
        default=None,
        description="Present when the MQTT broker could not be updated: why, and what "
        "to do. The registry has the change either way.",
    )


class DeviceSecret(BaseModel):
    """A device and its new secret: store it in the device now, it is not shown again."""

    data: AdminDevice
    secret: str
    broker: str | None = Field(
        default=None,
        description="Present when the MQTT broker could not be updated: why, and what "
        "to do. The registry has the change either way.",
    )


# ---------------------------------------------------------------------- exports


class ExportColumn(BaseModel):
    name: str = Field(description="The column's name in the file.", examples=["hour"])
    type: Literal["text", "int", "float", "timestamp", "date", "json", "list", "bool"] = Field(
        description="Its type: timestamps are RFC 3339 in UTC in CSV and GeoJSON."
    )
    unit: str | None = Field(
        default=None,
        description="The unit of its numbers (SenML spelling), when it has one; long "
        "readings exports carry theirs in the `unit` column.",
        examples=["ug/m3"],
    )
    description: str = Field(description="What it holds.")


class ExportDataset(BaseModel):
    id: str = Field(examples=["aqi"])
    time_series: bool = Field(description="Whether it takes a `from`/`to` range.")
    formats: list[Literal["csv", "parquet", "geojson"]]
    links: dict[str, str] = Field(description="Format → export URL.")
    columns: dict[str, list[ExportColumn]] = Field(
        description='Columns by bucket for readings (raw, 1m, 1h, 1d); under "" for the others.'
    )


class ExportIndex(BaseModel):
    data: list[ExportDataset]
    meta: Meta


class ExportFeatureCollection(BaseModel):
    """A GeoJSON export: a FeatureCollection of the rows, each a Feature with the
    columns as properties; licence and attribution are foreign members."""

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(
        description="One Feature per row: the site's Point, the columns as properties."
    )
    columns: list[ExportColumn] = Field(
        description="The properties of every Feature, in order, with their units."
    )
    license: str = Field(description="The licence's short id.", examples=[LICENSE_ID])
    license_url: str = Field(description="The licence text.", examples=[NLOD_URL])
    attribution: str = Field(
        description="The credit NLOD asks for.", examples=[_ATTRIBUTION_EXAMPLE]
    )
    note: str | None = Field(
        default=None, description="What the privacy rule left out of this export, if anything."
    )


# ---------------------------------------------------------------------- DCAT-AP-NO
# JSON-LD with the prefixes of the catalogue's @context (dcat, dct, foaf, vcard); the
# models name the properties DCAT-AP-NO makes mandatory and allow the rest.


class LangText(BaseModel):
    """A language-tagged string (JSON-LD value object)."""

    value: str = Field(alias="@value")
    language: str = Field(alias="@language", examples=["nb"])


class Ref(BaseModel):
    """A reference to another node by its IRI."""

    id: str = Field(alias="@id")


class Agent(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["foaf:Agent"] = Field(alias="@type")
    name: list[LangText] = Field(alias="foaf:name")


class ContactPoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["vcard:Organization"] = Field(alias="@type")
    fn: str = Field(alias="vcard:fn")
    email: Ref = Field(alias="vcard:hasEmail")


class _Node(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(alias="@id")
    title: list[LangText] = Field(alias="dct:title")
    license: Ref = Field(alias="dct:license")


class DcatDistribution(_Node):
    type: Literal["dcat:Distribution"] = Field(alias="@type")
    access_url: Ref = Field(alias="dcat:accessURL")
    format: Ref = Field(alias="dct:format")
    media_type: Ref = Field(alias="dcat:mediaType")


class DcatDataset(_Node):
    type: Literal["dcat:Dataset"] = Field(alias="@type")
    identifier: str = Field(alias="dct:identifier")
    description: list[LangText] = Field(alias="dct:description")
    theme: list[Ref] = Field(alias="dcat:theme", description="EU data themes.")
    publisher: Agent = Field(alias="dct:publisher")
    contact_point: ContactPoint = Field(alias="dcat:contactPoint")
    distribution: list[DcatDistribution] = Field(alias="dcat:distribution")


class DcatDataService(_Node):
    type: Literal["dcat:DataService"] = Field(alias="@type")
    endpoint_url: Ref = Field(alias="dcat:endpointURL")
    serves_dataset: list[Ref] = Field(alias="dcat:servesDataset")


class DcatCatalog(_Node):
    """The DCAT-AP-NO catalogue (JSON-LD): the open datasets and the API serving them."""

    context: dict[str, str] = Field(alias="@context")
    type: Literal["dcat:Catalog"] = Field(alias="@type")
    description: list[LangText] = Field(alias="dct:description")
    publisher: Agent = Field(alias="dct:publisher")
    contact_point: ContactPoint = Field(alias="dcat:contactPoint")
    service: list[DcatDataService] = Field(alias="dcat:service")
    dataset: list[DcatDataset] = Field(alias="dcat:dataset")


# ---------------------------------------------------------------------- platform health


class FlagCounts(BaseModel):
    """Readings by QARTOD flag (1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing)."""

    good: int
    not_evaluated: int
    suspect: int
    fail: int
    missing: int
    total: int


class ReasonCount(BaseModel):
    reason: str = Field(examples=["unknown_metric"])
    count: int


class QuarantineCounts(BaseModel):
    """Quarantined messages by reason: counts only; the payloads need the admin key."""

    total: int
    by_reason: list[ReasonCount]


class RejectedPayload(BaseModel):
    """A message of the device that went to quarantine, with why."""

    received_at: datetime = Field(description="When the message arrived.")
    topic: str = Field(
        description="Where it came: the MQTT topic, or http:<path> for an HTTP push.",
        examples=["smartby/aq-sentrum/telemetry"],
    )
    reason: str = Field(examples=["unknown_metric"])
    detail: str
    payload: str = Field(description="The message as received (see payload_encoding).")
    payload_encoding: Literal["utf-8", "base64"] = Field(
        description="utf-8: the payload as text; base64: bytes that are not UTF-8 (CBOR)."
    )


class PushRejected(BaseModel):
    record: int | None = Field(
        description="Index of the record (SenML pack, plain object member, or entry of "
        "sensordatavalues); null when the rejection is not about one record."
    )
    reason: str = Field(examples=["unknown_metric"])
    detail: str


class PushResult(BaseModel):
    """What a push stored: sent after the transaction holding its readings committed."""

    device_id: str = Field(examples=["aq-torget-4"])
    stored: int = Field(description="Readings stored (or stored already, for a retry).")
    rejected: int = Field(description="Always 0 here: a push with rejected records is a 422.")


class DeviceHealth(BaseModel):
    """How a device is doing: its state, and what it sent in the window."""

    device_id: str = Field(examples=["aq-sentrum"])
    site_id: str | None
    kind: str
    status: str = Field(description="active or disabled (the registry)")
    online: bool | None = Field(description="What the device last said on its status topic.")
    battery: float | None
    rssi: float | None
    last_seen: datetime | None
    state: Literal["online", "silent", "offline", "never_seen", "disabled"] = Field(
        description="disabled in the registry; never_seen; offline by its own word (status "
        "topic or MQTT last will); silent when nothing was heard for longer than "
        "silent_after_s (three reporting intervals); else online."
    )
    silent_after_s: int
    readings: FlagCounts = Field(description="Readings in the window by QC flag.")
    quarantined: QuarantineCounts = Field(description="Messages quarantined in the window.")
    rejected: list[RejectedPayload] | None = Field(
        default=None,
        description="Only with the device's own secret (HTTP Basic <device id>:<secret> or "
        "Bearer <secret>): its last 20 quarantined messages, newest first, whenever they "
        "came.",
    )


class DeviceHealthDocument(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: DeviceHealth
    meta: Meta


class DeviceHealthList(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[DeviceHealth]
    meta: Meta


class MinuteCount(BaseModel):
    minute: datetime
    readings: int


class DomainNewest(BaseModel):
    domain: str = Field(examples=["air_quality"])
    time: datetime = Field(description="Time of the newest value.")
    aggregate: Literal["raw", "1h"] = Field(
        description="raw: a reading; 1h: the latest complete hour (traffic is published "
        "only in aggregates)."
    )


class IngestState(BaseModel):
    workers: int = Field(description="Ingest workers connected to the database now.")
    running: bool


class DeviceStates(BaseModel):
    registered: int
    online: int
    silent: int
    offline: int
    never_seen: int
    disabled: int


class PlatformStatus(BaseModel):
    time: datetime = Field(description="When this status was taken.")
    ingest: IngestState
    readings_per_minute: list[MinuteCount] = Field(
        description="Readings per minute of their own time, over the last hour (complete "
        "minutes, oldest first, zero where none)."
    )
    newest: list[DomainNewest]
    devices: DeviceStates
    quarantined: QuarantineCounts = Field(description="In the last 24 hours.")


class PlatformStatusDocument(BaseModel):
    data: PlatformStatus
    meta: Meta
