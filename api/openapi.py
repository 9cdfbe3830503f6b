"""The OpenAPI document as a client generator and a reader need it (issue 16): short,
stable operation ids, a description of every schema property, and an example of
every success response.

Operation ids are FastAPI's ``<function>_<path>_<method>`` unless told otherwise,
which made clients with methods like ``SiteMetricDataV1SitesSiteIdMetricsMetricDataGet``.
`operation_id` names each route by what it does (``getSeriesData``); a route not in
`OPERATION_IDS` gets its function's name in camelCase, which is as stable as the code.

Property descriptions: what a field means is said once, here, in `GLOSSARY` (by
schema and name, else by name: ``site_id`` means the same everywhere), and filled in
where a model's field has none of its own.  Examples are built from the schemas'
own field examples, so they cannot drift from the models.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute

#: route function -> operation id (camelCase, verb first)
OPERATION_IDS: dict[str, str] = {
    "root": "getRoot",
    "sites": "listSites",
    "site": "getSite",
    "devices": "listDevices",
    "device": "getDevice",
    "metrics": "listMetrics",
    "metric": "getMetric",
    "series": "listSeries",
    "latest": "listLatest",
    "series_data": "getSeriesData",
    "site_metric_data": "getSiteMetricData",
    "aqi_now": "getAqiNow",
    "aqi_history": "getAqiHistory",
    "energy_daily": "listEnergyDaily",
    "energy_hourly": "listEnergyHourly",
    "traffic_hourly": "listTrafficHourly",
    "traffic_daily": "listTrafficDaily",
    "traffic_adt": "listTrafficAdt",
    "registry": "adminListDevices",
    "add": "adminAddDevice",
    "disable": "adminDisableDevice",
    "enable": "adminEnableDevice",
    "rotate": "adminRotateSecret",
    "export_index": "listExports",
    "export": "exportDataset",
    "dcat_catalogue": "getCatalog",
    "devices_health": "listDeviceHealth",
    "device_health": "getDeviceHealth",
    "push_readings": "pushReadings",
    "push_sensor_community": "pushSensorCommunity",
    "platform_status": "getStatus",
    "sensorthings_root": "getSensorThingsRoot",
    "resource": "getSensorThingsResource",
}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: the id a client method is named by."""
    return OPERATION_IDS.get(route.name) or _camel(route.name)


#: what a property means: by (schema, property), else by property alone
GLOSSARY: dict[str, str] = {
    # documents
    "data": "The resource(s) asked for.",
    "meta": "The licence and the attribution NLOD 2.0 asks for.",
    "next": "The URL of the next page, or null on the last page.",
    "from": "Start of the range served, inclusive (RFC 3339).",
    "to": "End of the range served, exclusive (RFC 3339).",
    "license": "The licence's short id.",
    "license_url": "The licence text.",
    "attribution": "The credit the licence asks for, to print beside the data.",
    "links": "Links to what the API serves.",
    "rel": "What the link is (its relation).",
    "href": "The link's URL.",
    "title": "A human-readable title.",
    "version": "The API's version.",
    "description": "A human-readable description.",
    # places and things
    "id": "The resource's id.",
    "site_id": "The site's id (see /v1/sites).",
    "device_id": "The device's id (see /v1/devices).",
    "series_id": "The time series' id (one device × one metric, see /v1/series).",
    "metric": "The metric's key (see /v1/metrics).",
    "metrics": "Keys of the metrics the device measures.",
    "site_name": "The site's name.",
    "name": "The name.",
    "municipality": "The municipality the site lies in.",
    "kind": "The kind of device: air_quality, energy or traffic.",
    "vendor": "The device's maker.",
    "model": "The device's model.",
    "status": "active, or disabled (its messages are quarantined).",
    "online": "What the device last said on its status topic (null: never said).",
    "battery": "Battery level the device last reported (V or %).",
    "rssi": "Radio signal strength the device last reported, dBm.",
    "last_seen": "When a message of the device was last received.",
    "created_at": "When it was registered.",
    "updated_at": "When it was last changed.",
    "calibration": "Free-form calibration facts kept with the device.",
    "has_secret": "Whether the device has a broker secret.",
    "secret": "The device's broker secret: shown this once only.",
    "lon": "WGS 84 longitude, degrees east.",
    "lat": "WGS 84 latitude, degrees north.",
    "type": "The GeoJSON object's type (RFC 7946).",
    "geometry": "The site's position as a GeoJSON Point (lon, lat).",
    "properties": "The site's facts.",
    "features": "One Feature per site.",
    "coordinates": "Longitude and latitude, WGS 84 degrees.",
    # metrics and values
    "key": "The metric's key, used everywhere else.",
    "domain": "air_quality, weather, energy or traffic.",
    "unit": "The canonical unit, SenML spelling (RFC 8428).",
    "unit_symbol": "The same unit as people write it.",
    "definition_uri": "The metric's definition in a public vocabulary (EEA, CF, QUDT).",
    "time": "When it was measured (RFC 3339, UTC); of an aggregate, its start.",
    "value": "The value in the metric's unit.",
    "bucket": "raw, or the aggregation: 1m, 1h or 1d (local days).",
    "mean": "Mean of the usable readings.",
    "sum": "Sum of the usable readings.",
    "min": "Smallest usable reading.",
    "max": "Largest usable reading.",
    # indicators
    "hour": "Start of the hour (RFC 3339, UTC).",
    "day": "The local date.",
    "day_start": "Local midnight that starts the day (RFC 3339, UTC).",
    "level": "European Air Quality Index: 1 good … 6 extremely poor (EEA 2024).",
    "label": "The index level in words.",
    "dominant": "The pollutant that set the level.",
    "pm25": "Hourly mean of PM2.5, µg/m³.",
    "pm10": "Hourly mean of PM10, µg/m³.",
    "no2": "Hourly mean of NO2, µg/m³.",
    "o3": "Hourly mean of O3, µg/m³.",
    "so2": "Hourly mean of SO2, µg/m³.",
    "kwh": "Electricity used, kWh.",
    "co2e_kg": "CO2 equivalents of that electricity, kg (SMARTBY grid factor).",
    "grid_factor_g_per_kwh": "The grid emission factor used, g CO2e per kWh.",
    "coverage": "Share of the period the readings covered (0 to 1).",
    "volume": "Vehicles counted.",
    "heavy_volume": "Vehicles longer than 5.6 m counted.",
    "heavy_share": "Share of vehicles longer than 5.6 m.",
    "mean_speed_kmh": "Mean speed of the vehicles, km/h.",
    "full_days": "Days the counter reported in full.",
    "first_day": "First fully reported day counted.",
    "last_day": "Last fully reported day counted.",
    # health and status
    "good": "Readings flagged good (QARTOD 1).",
    "not_evaluated": "Readings not evaluated (QARTOD 2).",
    "suspect": "Readings flagged suspect (QARTOD 3).",
    "fail": "Readings flagged fail (QARTOD 4).",
    "missing": "Readings flagged missing (QARTOD 9).",
    "total": "All of them.",
    "reason": "Why messages were quarantined.",
    "count": "How many.",
    "by_reason": "Quarantined messages by reason.",
    "silent_after_s": "Seconds without a message after which the device counts as silent.",
    "registered": "Devices registered.",
    "silent": "Devices silent longer than their usual interval allows.",
    "offline": "Devices that said they went offline.",
    "never_seen": "Devices never heard from.",
    "disabled": "Devices disabled by staff.",
    "minute": "Start of the minute.",
    "readings": "Readings stored in it.",
    "running": "Whether an ingest worker is connected.",
    "ingest": "The ingest workers' state.",
    "devices": "Devices by state.",
    "newest": "The newest reading per domain.",
    "formats": "File formats it exports to.",
    # problems (RFC 9457)
    "detail": "What exactly was wrong with this request; names the parameter and limit.",
    "instance": "The request path the problem is about.",
    # DCAT-AP-NO (JSON-LD)
    "@context": "The JSON-LD context: the prefixes of the properties.",
    "@id": "The node's IRI.",
    "@type": "The node's RDF class.",
    "@value": "The text.",
    "@language": "Its language tag (BCP 47).",
    "dct:title": "Title, in Norwegian Bokmål and English.",
    "dct:description": "Description, in Norwegian Bokmål and English.",
    "dct:identifier": "The dataset's identifier.",
    "dct:publisher": "The publishing organisation, by its Enhetsregisteret URI.",
    "dct:license": "The licence (NLOD 2.0, from the EU licence vocabulary).",
    "dct:format": "The file type (EU file-type vocabulary).",
    "dcat:contactPoint": "Whom to contact about the data.",
    "dcat:dataset": "The datasets of the catalogue.",
    "dcat:distribution": "The ways to get the dataset: the JSON API and the files.",
    "dcat:accessURL": "Where the distribution is reached.",
    "dcat:mediaType": "Its IANA media type.",
    "dcat:service": "The API serving the datasets.",
    "dcat:servesDataset": "The datasets the API serves.",
    "dcat:endpointURL": "The API's root.",
    "foaf:name": "The organisation's name.",
    "vcard:fn": "The contact's name.",
    "vcard:hasEmail": "The contact's e-mail address.",
    # SensorThings (OGC 18-088 §9.2.1)
    "url": "The entity set's URL.",
    "conformance": "Conformance classes the service implements.",
    "serverSettings": "The service's settings (conformance classes).",
}
SCHEMA_GLOSSARY: dict[tuple[str, str], str] = {
    ("Problem", "type"): "A URI naming the kind of problem (about:blank: see the status).",
    ("Problem", "title"): "The kind of problem, in words.",
    ("Problem", "status"): "The HTTP status code.",
    ("Link", "title"): "What is there.",
    ("Root", "title"): "The API's title.",
    ("Root", "description"): "What the API serves.",
    ("ServiceRoot", "value"): "The entity sets of the service.",
    ("EntitySet", "name"): "The entity set's name.",
    ("Metric", "name"): "The metric's name.",
    ("SiteProperties", "name"): "The site's name.",
    ("ExportDataset", "id"): "The dataset's id, as in /v1/export/{dataset}.",
    ("Series", "id"): "The time series' id.",
    ("SiteFeature", "id"): "The site's id.",
    ("SiteFeatureDocument", "id"): "The site's id.",
    ("Device", "id"): "The device's id (also its MQTT user name).",
    ("AdminDevice", "id"): "The device's id (also its MQTT user name).",
    ("NewDevice", "id"): "The device's id (also its MQTT user name).",
    ("DeviceHealth", "kind"): "The kind of device: air_quality, energy or traffic.",
    ("Latest", "kind"): "The kind of device: air_quality, energy or traffic.",
    ("ReasonCount", "count"): "Messages quarantined for it.",
    ("QuarantineCounts", "total"): "Messages quarantined in all.",
    ("FlagCounts", "total"): "Readings in all.",
    ("DeviceStates", "online"): "Devices heard from within their usual interval.",
    ("DataPage", "metric"): "The metric of the series.",
    ("DataPage", "unit"): "The unit of every value, SenML spelling.",
    ("Latest", "value"): "The latest value, in the metric's unit.",
    ("RawPoint", "value"): "The reading, in the metric's unit.",
    ("AqiStation", "pm25"): "Latest hourly mean of PM2.5, µg/m³.",
    ("AqiStation", "pm10"): "Latest hourly mean of PM10, µg/m³.",
    ("AqiStation", "no2"): "Latest hourly mean of NO2, µg/m³.",
    ("AqiStation", "o3"): "Latest hourly mean of O3, µg/m³.",
    ("AqiStation", "so2"): "Latest hourly mean of SO2, µg/m³.",
}


#: example values by property name, where a field gives none of its own: one story
#: (PM2.5 at Narvik sentrum on a November morning) across every document
FIELD_EXAMPLES: dict[str, Any] = {
    "site_id": "narvik-sentrum",
    "device_id": "aq-sentrum",
    "series_id": 17,
    "series": [17],
    "metric": "pm25",
    "metrics": ["no2", "pm10", "pm25"],
    "unit": "ug/m3",
    "unit_symbol": "µg/m³",
    "kind": "air_quality",
    "domain": "air_quality",
    "site_name": "Narvik sentrum, Kongens gate",
    "name": "Narvik sentrum, Kongens gate",
    "municipality": "Narvik",
    "lon": 17.4272,
    "lat": 68.4385,
    "vendor": "Clarity",
    "model": "Node-S",
    "status": "active",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-11-02T00:00:00Z",
    "time": "2026-11-01T07:00:00Z",
    "end": "2026-11-01T08:00:00Z",
    "hour": "2026-11-01T07:00:00Z",
    "day": "2026-11-01",
    "day_start": "2026-10-31T23:00:00Z",
    "value": 12.3,
    "quality": 1,
    "count": 60,
    "good_count": 58,
    "suspect_count": 2,
    "sum": 738.0,
    "mean": 12.3,
    "std": 1.4,
    "min": 9.4,
    "max": 15.7,
    "first": 9.5,
    "last": 14.5,
    "coverage": 1.0,
    "pm25": 12.3,
    "pm10": 24.1,
    "no2": 31.4,
    "o3": 41.0,
    "so2": 2.1,
    "kwh": 41.235,
    "co2e_kg": 0.701,
    "volume": 812.0,
    "heavy_volume": 73.0,
    "heavy_share": 0.09,
    "mean_speed_kmh": 47.3,
    "next": None,
    "battery": 3.9,
    "rssi": -71.0,
    "reason": "unknown_metric",
    "bucket": "1h",
}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = components.get(ref.rsplit("/", 1)[1], {})
        return resolved
    return schema


def _placeholder(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    form = schema.get("format")
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if kind == "string":
        if form == "date-time":
            return "2026-11-01T08:00:00Z"
        if form == "date":
            return "2026-11-01"
        if form in ("uri", "url"):
            return "https://data.example.no/v1"
        return "text"
    if kind == "integer":
        return 1
    if kind == "number":
        return 12.3
    if kind == "boolean":
        return True
    return None


def example_of(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """An example instance of ``schema``: each field's own example where it gives one,
    else a value of its type; lists hold one element."""
    schema = _resolve(schema, components)
    for key in ("example", "default"):
        if key in schema and schema[key] is not None:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if depth > 8:
        return None
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema:
            options = [s for s in schema[union] if _resolve(s, components).get("type") != "null"]
            return example_of(options[0], components, depth + 1) if options else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: _property_example(name, prop, components, depth + 1)
            for name, prop in schema.get("properties", {}).items()
        }
    if kind == "array":
        return [example_of(schema.get("items", {}), components, depth + 1)]
    return _placeholder(schema)


def _property_example(
    name: str, schema: dict[str, Any], components: dict[str, Any], depth: int
) -> Any:
    own = _resolve(schema, components)
    if "example" in own or own.get("examples") or name not in FIELD_EXAMPLES:
        return example_of(schema, components, depth)
    value = FIELD_EXAMPLES[name]
    return value if _fits(value, own, components) else example_of(schema, components, depth)


_JSON_TYPES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _fits(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """Whether a glossary example has the type the property declares (``value`` is a
    number in one schema and a list in another)."""
    options = [_resolve(s, components) for s in schema.get("anyOf", [])] or [schema]
    allowed = {o.get("type", "object" if "properties" in o else None) for o in options}
    kind = _JSON_TYPES.get(type(value))
    return None in allowed or kind in allowed or (kind == "integer" and "number" in allowed)


_JSON = re.compile(r"^application/([a-z.+-]*\+)?json$")


def describe(document: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill in what the models leave out: property descriptions from the glossary and,
    for every success response without one, an example (``examples``: given ones by
    operation id and media type)."""
    components: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for schema_name, schema in components.items():
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                text = SCHEMA_GLOSSARY.get((schema_name, name)) or GLOSSARY.get(name)
                if text:
                    prop["description"] = text
    for item in document.get("paths", {}).values():
        for operation in item.values():
            given = (examples or {}).get(operation.get("operationId", ""), {})
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                for media, content in response.get("content", {}).items():
                    if "example" in content or "examples" in content:
                        continue
                    if media in given:
                        content["example"] = given[media]
                    elif _JSON.match(media) and "schema" in content:
                        content["example"] = example_of(content["schema"], components)
    return document


#: examples a schema cannot give: files (by operation id and media type)
EXAMPLES: dict[str, dict[str, Any]] = {
    "exportDataset": {
        "text/csv": (
            "time,series_id,site_id,device_id,metric,unit,value,quality,quality_name\r\n"
            "2026-11-01T07:00:00Z,17,narvik-sentrum,aq-sentrum,pm25,ug/m3,12.3,1,good\r\n"
            "2026-11-01T07:00:00Z,18,narvik-sentrum,aq-sentrum,no2,ug/m3,31.4,1,good\r\n"
        ),
    },
}
