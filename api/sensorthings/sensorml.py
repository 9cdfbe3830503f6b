"""A Sensor's metadata as a SensorML 2.0 document (OGC 12-000r2).

SensorThings lets a Sensor's ``metadata`` be a link to a description whose format
``encodingType`` names (OGC 18-088 Table 14: a PDF data sheet or SensorML 2.0).
There are no data sheets for the city's sensors, but the registry knows what a
SensorML ``PhysicalComponent`` says: maker and model (identification), the kind of
device (classification), what it measures with which unit (outputs: SWE Common
Quantities with the metric's definition URI and UCUM unit) and where it is
(position).  Public fields only, as everywhere in the open data.

The element order follows the SensorML 2.0 schema (DescribedObject, then
AbstractProcess, then AbstractPhysicalProcess).
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree as ET

from fastapi import Request
from psycopg import sql
from starlette.responses import Response

from api.db import fetch_tuples
from api.problems import Problem
from api.responses import MAX_AGE_CATALOGUE, cacheable_response

SML = "http://www.opengis.net/sensorml/2.0"
SWE = "http://www.opengis.net/swe/2.0"
GML = "http://www.opengis.net/gml/3.2"
XLINK = "http://www.w3.org/1999/xlink"
for _prefix, _uri in (("sml", SML), ("swe", SWE), ("gml", GML), ("xlink", XLINK)):
    ET.register_namespace(_prefix, _uri)

MEDIA_TYPE = "application/xml"
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: the catalogue's units (SenML spelling) in UCUM where the two differ
_UCUM = {"%RH": "%", "kWh": "kW.h", "count": "{vehicle}"}
#: SensorML's own ontology for the identifiers (sensorml.com/ont/swe/property)
_MANUFACTURER = "http://sensorml.com/ont/swe/property/Manufacturer"
_MODEL = "http://sensorml.com/ont/swe/property/ModelNumber"
_SENSOR_TYPE = "http://sensorml.com/ont/swe/property/SensorType"
_WGS84 = "http://www.opengis.net/def/crs/EPSG/0/4326"

_QUERY = sql.SQL(
    "SELECT d.id, d.kind, d.vendor, d.model, s.id, s.name, s.lon, s.lat,"
    " coalesce(array_agg(ARRAY[m.key, m.name, m.unit, m.definition_uri] ORDER BY m.key)"
    " FILTER (WHERE m.key IS NOT NULL), '{}')"
    " FROM devices d LEFT JOIN sites s ON s.id = d.site_id"
    " LEFT JOIN series se ON se.device_id = d.id LEFT JOIN metrics m ON m.key = se.metric"
    " WHERE d.id = %(device)s GROUP BY d.id, s.id"
)


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _term(parent: ET.Element, wrapper: str, definition: str, label: str, value: str) -> None:
    item = ET.SubElement(parent, _q(SML, wrapper))
    term = ET.SubElement(item, _q(SML, "Term"), {"definition": definition})
    ET.SubElement(term, _q(SML, "label")).text = label
    ET.SubElement(term, _q(SML, "value")).text = value


def sensorml_document(row: tuple[Any, ...], sensor_url: str) -> bytes:
    """The SensorML XML of one device row of `_QUERY`."""
    device_id, kind, vendor, model, _site_id, site_name, lon, lat, outputs = row
    kind_words = str(kind).replace("_", " ")
    root = ET.Element(_q(SML, "PhysicalComponent"), {_q(GML, "id"): f"sensor-{device_id}"})
    where = f" at {site_name}" if site_name else ""
    ET.SubElement(root, _q(GML, "description")).text = (
        " ".join(p for p in (vendor, model, f"{kind_words} sensor") if p) + where
    )
    ET.SubElement(root, _q(GML, "identifier"), {"codeSpace": "uid"}).text = sensor_url
    ET.SubElement(root, _q(GML, "name")).text = device_id
    if vendor or model:
        identification = ET.SubElement(root, _q(SML, "identification"))
        identifiers = ET.SubElement(identification, _q(SML, "IdentifierList"))
        if vendor:
            _term(identifiers, "identifier", _MANUFACTURER, "Manufacturer", vendor)
        if model:
            _term(identifiers, "identifier", _MODEL, "Model", model)
    classification = ET.SubElement(root, _q(SML, "classification"))
    classifiers = ET.SubElement(classification, _q(SML, "ClassifierList"))
    _term(classifiers, "classifier", _SENSOR_TYPE, "Sensor type", f"{kind_words} sensor")
    if outputs:
        section = ET.SubElement(root, _q(SML, "outputs"))
        output_list = ET.SubElement(section, _q(SML, "OutputList"))
        for key, name, unit, definition in outputs:
            output = ET.SubElement(output_list, _q(SML, "output"), {"name": key})
            quantity = ET.SubElement(output, _q(SWE, "Quantity"), {"definition": definition})
            ET.SubElement(quantity, _q(SWE, "label")).text = name
            ET.SubElement(quantity, _q(SWE, "uom"), {"code": _UCUM.get(unit, unit)})
    if lon is not None and lat is not None:
        position = ET.SubElement(root, _q(SML, "position"))
        point = ET.SubElement(
            position, _q(GML, "Point"), {_q(GML, "id"): f"position-{device_id}", "srsName": _WGS84}
        )
        # EPSG:4326 axis order: latitude, then longitude
        ET.SubElement(point, _q(GML, "pos")).text = f"{lat} {lon}"
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


#: the OpenAPI example: a document made by `sensorml_document` itself, so it cannot drift
EXAMPLE = sensorml_document(
    (
        "aq-sentrum",
        "air_quality",
        "Vaisala",
        "AQT530",
        "narvik-sentrum",
        "Narvik sentrum",
        17.4272,
        68.4385,
        [("pm25", "PM2.5", "ug/m3", "http://vocab.nerc.ac.uk/collection/P01/current/PMPAR25/")],
    ),
    "https://data.narvik.kommune.no/smartby/sta/v1.1/Sensors('aq-sentrum')",
).decode()


async def sensorml_response(request: Request, device_id: str, base: str) -> Response:
    """200 with the document, or 404 (an id that cannot exist is not looked up);
    ``base`` is the SensorThings service root URL."""
    missing = Problem(404, "Not found", f"no Sensor {device_id!r}", resource="Sensor")
    if not _DEVICE_ID.fullmatch(device_id):
        raise missing
    rows = await fetch_tuples(request, (_QUERY, {"device": device_id}))
    if not rows:
        raise missing
    url = f"{base}/Sensors('{device_id}')"
    body = sensorml_document(rows[0], url)
    return cacheable_response(
        request,
        body,
        max_age=MAX_AGE_CATALOGUE,
        response_class=_XmlResponse,
    )


class _XmlResponse(Response):
    media_type = MEDIA_TYPE
