"""Public air-quality warnings: an Atom feed (RFC 4287) of every CAP 1.2 message, each
message as the document it was issued as, and the active warnings as JSON (what the
website's banner shows).

The documents are stored as issued (`ingest.warnings`) and served byte for byte: a
CAP message is never changed, only followed by another that references it.  The
feed follows the usual shape of CAP feeds (as the OASIS CAP feeds note and the
national services' feeds do): one entry per message, its link to the CAP document
with ``type="application/cap+xml"``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.db import fetch_dicts
from api.models import Meta
from api.problems import Problem, not_found
from api.responses import MAX_AGE_LIVE, cacheable_response, public_base_url, read_response
from core.cap import MEDIA_TYPE as CAP_MEDIA_TYPE
from core.indicators import AQI_LEVEL_NAMES
from db import warnings as store

router = APIRouter(prefix="/warnings", tags=["warnings"])

ATOM = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE = "application/atom+xml"
#: the feed holds the newest messages; older ones stay reachable by their documents
FEED_SIZE = 100
#: a CAP document never changes
MAX_AGE_DOCUMENT = 86_400
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class AtomResponse(Response):
    media_type = ATOM_MEDIA_TYPE


class CapResponse(Response):
    media_type = CAP_MEDIA_TYPE


class Translated(BaseModel):
    nb: str = Field(description="The text in Norwegian bokmål.")
    en: str = Field(description="The text in English.")


class ActiveWarning(BaseModel):
    identifier: str = Field(description="The latest CAP message of the episode.")
    site_id: str
    site_name: str
    msg_type: Literal["Alert", "Update"] = Field(
        description="CAP msgType of the latest message: Alert when the episode began, "
        "Update when its level rose since."
    )
    level: int = Field(
        ge=4, le=6, examples=[4], description="EEA index level: 4 Poor … 6 Extremely poor."
    )
    label: str
    dominant: str | None
    onset: datetime = Field(description="Start of the episode's first poor hour.")
    hour: datetime = Field(description="The hour the latest message is about.")
    sent: datetime = Field(description="When the latest message was issued.")
    headline: Translated = Field(description="The message's headline, in both languages.")
    summary: Translated = Field(
        description="What the level means and the EEA's health advice, in both languages."
    )
    cap: str = Field(description="URL of the CAP 1.2 document.")


class ActiveWarnings(BaseModel):
    data: list[ActiveWarning]
    meta: Meta


#: OpenAPI examples of the two XML answers (shortened; a real one carries every element)
_ATOM_EXAMPLE = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <id>https://data.example.no/v1/warnings</id>
  <title>Air-quality warnings</title>
  <updated>2026-11-01T08:05:00Z</updated>
  <entry>
    <id>smartby-aqi-narvik-sentrum-20261101T0700Z-1</id>
    <title>Poor air quality at Narvik sentrum, Kongens gate</title>
    <updated>2026-11-01T08:05:00Z</updated>
    <link rel="alternate" type="application/cap+xml"
      href="https://data.example.no/v1/warnings/smartby-aqi-narvik-sentrum-20261101T0700Z-1.cap.xml"/>
  </entry>
</feed>
"""
_CAP_EXAMPLE = """<?xml version="1.0" encoding="utf-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>smartby-aqi-narvik-sentrum-20261101T0700Z-1</identifier>
  <sender>postmottak@narvik.kommune.no</sender>
  <sent>2026-11-01T08:05:00+00:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>en-GB</language>
    <category>Env</category>
    <event>Poor air quality</event>
    <urgency>Immediate</urgency>
    <severity>Moderate</severity>
    <certainty>Observed</certainty>
    <headline>Poor air quality at Narvik sentrum, Kongens gate</headline>
  </info>
</alert>
"""


def _cap_url(base: str, identifier: str) -> str:
    return f"{base}/v1/warnings/{identifier}.cap.xml"


@router.get(
    "",
    summary="Air-quality warnings: Atom feed of CAP 1.2 messages",
    response_class=AtomResponse,
    responses={
        200: {
            "content": {ATOM_MEDIA_TYPE: {"schema": {"type": "string"}, "example": _ATOM_EXAMPLE}}
        }
    },
)
async def feed(
    request: Request,
    lang: Annotated[
        Literal["nb", "en"], Query(description="Language of titles and summaries.")
    ] = "nb",
) -> Response:
    """The newest CAP messages (alerts, updates and all-clears), newest first; each
    entry links to its CAP document (``rel="alternate"``, ``application/cap+xml``)."""
    rows = await fetch_dicts(request, store.feed_query(FEED_SIZE))
    base = public_base_url(request)
    body = atom_feed(rows, base, lang, request.app.state.settings.city)
    return cacheable_response(request, body, max_age=MAX_AGE_LIVE, response_class=AtomResponse)


@router.get("/active", response_model=ActiveWarnings, summary="Air-quality warnings in force")
async def active(request: Request) -> Response:
    """The latest message of each warning still in force, per station."""
    rows = await fetch_dicts(request, store.active_query())
    base = public_base_url(request)
    data = [
        {
            "identifier": r["identifier"],
            "site_id": r["site_id"],
            "site_name": r["site_name"],
            "msg_type": r["msg_type"],
            "level": r["level"],
            "label": AQI_LEVEL_NAMES[r["level"] - 1],
            "dominant": r["dominant"],
            "onset": r["onset"],
            "hour": r["hour"],
            "sent": r["sent"],
            "headline": {"nb": r["headline_nb"], "en": r["headline_en"]},
            "summary": {"nb": r["summary_nb"], "en": r["summary_en"]},
            "cap": _cap_url(base, r["identifier"]),
        }
        for r in rows
    ]
    return read_response(
        request, {"data": data, "meta": request.app.state.meta}, max_age=MAX_AGE_LIVE
    )


@router.get(
    "/{identifier}.cap.xml",
    summary="One warning as its CAP 1.2 document",
    response_class=CapResponse,
    responses={
        200: {"content": {CAP_MEDIA_TYPE: {"schema": {"type": "string"}, "example": _CAP_EXAMPLE}}}
    },
)
async def document(
    request: Request,
    identifier: Annotated[
        str,
        Path(
            description="The CAP identifier.",
            examples=["smartby-aqi-narvik-sentrum-20260112T0700Z-1"],
        ),
    ],
) -> Response:
    """The message exactly as it was issued (OASIS CAP 1.2)."""
    if not re.match(IDENTIFIER, identifier):
        raise Problem(
            400,
            "Bad request parameter",
            "path parameter 'identifier': not a warning identifier",
            parameter="identifier",
        )
    rows = await fetch_dicts(request, store.document_query(identifier))
    if not rows:
        raise not_found("warning", identifier)
    return cacheable_response(
        request,
        str(rows[0]["cap"]).encode(),
        max_age=MAX_AGE_DOCUMENT,
        response_class=CapResponse,
    )


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def atom_feed(rows: list[dict[str, Any]], base: str, lang: str, city: str) -> bytes:
    """RFC 4287: a feed with id, title, updated, author and a self link; an entry per
    message with id, title, updated, published, summary and the link to its CAP."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    root = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": lang})
    sub(root, "id", f"{base}/v1/warnings")
    title = f"Luftkvalitetsvarsler – {city}" if lang == "nb" else f"Air-quality warnings – {city}"
    sub(root, "title", title)
    newest = max((r["sent"] for r in rows), default=datetime(2026, 1, 1, tzinfo=UTC))
    sub(root, "updated", _atom_time(newest))
    author = sub(root, "author")
    sub(author, "name", city)
    sub(root, "link", rel="self", type=ATOM_MEDIA_TYPE, href=f"{base}/v1/warnings?lang={lang}")
    sub(root, "link", rel="alternate", type="text/html", href=f"{base}/?lang={lang}")
    sub(root, "generator", "smartby")
    for row in rows:
        entry = sub(root, "entry")
        url = _cap_url(base, row["identifier"])
        sub(entry, "id", url)
        sub(entry, "title", row[f"headline_{lang}"])
        sub(entry, "updated", _atom_time(row["sent"]))
        sub(entry, "published", _atom_time(row["sent"]))
        sub(entry, "summary", row[f"summary_{lang}"])
        sub(entry, "category", term=row["msg_type"], label=row["event"])
        sub(entry, "link", rel="alternate", type=CAP_MEDIA_TYPE, href=url)
        sub(
            entry,
            "link",
            rel="related",
            type="text/html",
            href=f"{base}/stations/{row['site_id']}?lang={lang}",
        )
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"
