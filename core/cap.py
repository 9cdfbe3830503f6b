"""CAP 1.2 documents (OASIS Common Alerting Protocol, Version 1.2, 1 July 2010).

`render` writes one ``alert`` with its elements in the order the schema's sequences
require (CAP-v1.2.xsd; §3.2 of the standard), one ``info`` block per language, as
MET Norway's warnings do (``no`` and ``en-GB``).  Times are written as the schema's
pattern wants them, to the second with a numeric offset (§3.3.2: no "Z", no
fractions).  Pure: ElementTree in, bytes out; the tests validate the result against
the vendored XSD.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from core.warnings import WarningWords

NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
#: the media type of a CAP document (IANA registration, CAP 1.2 Appendix)
MEDIA_TYPE = "application/cap+xml"

Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
ResponseType = Literal[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"
]


@dataclass(frozen=True, slots=True)
class Reference:
    """An earlier message this one updates or cancels (§3.2.1 ``references``)."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class CapAlert:
    identifier: str
    sender: str
    sent: datetime
    msg_type: Literal["Alert", "Update", "Cancel"]
    references: Sequence[Reference]
    category: str  # e.g. "Env" (§3.2.2 category)
    event_code: tuple[str, str]  # (valueName, value)
    response_type: ResponseType
    urgency: Urgency
    severity: Severity
    certainty: Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
    onset: datetime | None
    parameters: Sequence[tuple[str, str]]
    circle: Circle
    words: Sequence[WarningWords]
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"


def cap_time(moment: datetime) -> str:
    """``2026-01-09T14:00:00+01:00``: what the XSD's pattern for times accepts."""
    if moment.tzinfo is None:
        raise ValueError("CAP times need an offset")
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "+00:00" if text.endswith("+00:00") else text


def check_identifier(value: str) -> str:
    """§3.2.1: identifier and sender must not include spaces, commas or the restricted
    characters < and &."""
    if not value or any(c in value for c in " ,<&\t\n"):
        raise ValueError(f"not a CAP identifier or sender: {value!r}")
    return value


def _text(parent: ET.Element, tag: str, value: str | None) -> None:
    if value is not None:
        ET.SubElement(parent, tag).text = value


def render(alert: CapAlert) -> bytes:
    """The CAP 1.2 XML document, UTF-8, with its XML declaration."""
    check_identifier(alert.identifier)
    check_identifier(alert.sender)
    if alert.msg_type != "Alert" and not alert.references:
        raise ValueError(f"a CAP {alert.msg_type} must reference the messages it follows")
    root = ET.Element("alert", xmlns=NAMESPACE)
    _text(root, "identifier", alert.identifier)
    _text(root, "sender", alert.sender)
    _text(root, "sent", cap_time(alert.sent))
    _text(root, "status", alert.status)
    _text(root, "msgType", alert.msg_type)
    _text(root, "scope", "Public")
    if alert.references:
        _text(
            root,
            "references",
            " ".join(
                f"{check_identifier(r.sender)},{check_identifier(r.identifier)},{cap_time(r.sent)}"
                for r in alert.references
            ),
        )
    for words in alert.words:
        info = ET.SubElement(root, "info")
        _text(info, "language", words.language)
        _text(info, "category", alert.category)
        _text(info, "event", words.event)
        _text(info, "responseType", alert.response_type)
        _text(info, "urgency", alert.urgency)
        _text(info, "severity", alert.severity)
        _text(info, "certainty", alert.certainty)
        code = ET.SubElement(info, "eventCode")
        _text(code, "valueName", alert.event_code[0])
        _text(code, "value", alert.event_code[1])
        if alert.onset is not None:
            _text(info, "onset", cap_time(alert.onset))
        _text(info, "senderName", words.sender_name)
        _text(info, "headline", words.headline)
        _text(info, "description", words.description)
        _text(info, "instruction", words.instruction or None)
        _text(info, "web", words.web)
        for name, value in alert.parameters:
            parameter = ET.SubElement(info, "parameter")
            _text(parameter, "valueName", name)
            _text(parameter, "value", value)
        area = ET.SubElement(info, "area")
        _text(area, "areaDesc", words.area)
        # §3.3.1: "lat,lon radius" in WGS 84 decimal degrees, radius in km
        c = alert.circle
        _text(area, "circle", f"{c.lat:.5f},{c.lon:.5f} {c.radius_km:g}")
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"
