"""The DCAT-AP-NO catalogue of the open datasets, as JSON-LD, and the licence terms.

DCAT-AP-NO (Digdir's Norwegian profile of DCAT-AP, which data.norge.no harvests)
makes these mandatory, and DESIGN.md lists them: on a dataset ``dct:title``,
``dct:description``, ``dct:identifier``, ``dcat:theme`` (from the EU data-theme
vocabulary), ``dct:publisher``, ``dcat:contactPoint``; on a distribution
``dcat:accessURL`` and ``dct:license``; on the catalogue title, description,
publisher and its datasets.  Titles and descriptions come in Norwegian Bokmål and
English.  `catalogue` builds the document from settings and a base URL only, so it
is tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg import sql

from api.export_datasets import DATASETS
from api.licence import NLOD_URL, attribution
from core.settings import Settings

DATA_THEME = "http://publications.europa.eu/resource/authority/data-theme/"
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"
LANGUAGE = "http://publications.europa.eu/resource/authority/language/"
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
ACCESS_RIGHT = "http://publications.europa.eu/resource/authority/access-right/"
LICENCE = "http://publications.europa.eu/resource/authority/licence/"
#: NLOD 2.0 in the EU licence vocabulary, which DCAT-AP-NO's licence must come from
#: (data.norge.no names it so); the licence text is linked from it
NLOD_CONCEPT = LICENCE + "NLOD_2_0"
IANA_MEDIA = "https://www.iana.org/assignments/media-types/"
#: Enhetsregisteret's URI of an organisation, as DCAT-AP-NO names publishers
BRREG_ENTITY = "https://data.brreg.no/enhetsregisteret/api/enheter/"
#: Kartverket's URI of a municipality by its number (the reference data data.norge.no uses)
KARTVERKET_MUNICIPALITY = "https://data.geonorge.no/administrativeEnheter/kommune/id/"
PUBLISHER_TYPE = "http://purl.org/adms/publishertype/LocalAuthority"
WKT = "http://www.opengis.net/ont/geosparql#wktLiteral"

FILE_TYPES = {"csv": "CSV", "parquet": "PARQUET", "geojson": "GEOJSON", "json": "JSON"}
MEDIA_TYPES = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "geojson": "application/geo+json",
    "json": "application/json",
}

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dcatap": "http://data.europa.eu/r5r/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locn": "http://www.w3.org/ns/locn#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
}


@dataclass(frozen=True, slots=True)
class CatalogueFacts:
    """What the catalogue says that only the data knows: each time-series dataset's
    real range (dct:temporal) and the bounding box of the sites (dct:spatial)."""

    temporal: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    bbox: tuple[float, float, float, float] | None = None  # min lon, min lat, max lon, max lat


def facts_query() -> sql.Composable:
    """Rows (dataset, first, last) of every time-series dataset, and ('sites', min lon,
    min lat, max lon, max lat) of the sites.  Each min/max is an index probe (every
    time column is indexed); a readings' first time also looks at the daily rollups,
    which outlive raw readings, one probe per series."""
    parts: list[LiteralString] = [
        "SELECT 'readings', least(min(t.time), (SELECT min(x.bucket) FROM series s"
        " CROSS JOIN LATERAL (SELECT bucket FROM rollups r WHERE r.series_id = s.id"
        " AND r.resolution = '1d' ORDER BY bucket LIMIT 1) x)), max(t.time),"
        " NULL::float8, NULL::float8 FROM readings t",
        "SELECT 'traffic-adt', min(t.first_day)::timestamptz, max(t.last_day)::timestamptz,"
        " NULL::float8, NULL::float8 FROM traffic_adt t",
        "SELECT 'sites', NULL, NULL, min(lon), min(lat) FROM sites"
        " UNION ALL SELECT 'sites-max', NULL, NULL, max(lon), max(lat) FROM sites",
    ]
    for dataset in DATASETS.values():
        if dataset.time_column is None or dataset.key == "readings":
            continue
        parts.append(
            "SELECT '"
            + dataset.key
            + "', min("
            + dataset.time_column
            + "), max("
            + dataset.time_column
            + "), NULL::float8, NULL::float8 FROM "
            + dataset.source
        )
    return sql.SQL(" UNION ALL ").join(sql.SQL(part) for part in parts)


def facts_of(rows: list[tuple[Any, ...]]) -> CatalogueFacts:
    """`CatalogueFacts` from the rows of `facts_query`."""
    temporal: dict[str, tuple[datetime, datetime]] = {}
    low: tuple[float, float] | None = None
    high: tuple[float, float] | None = None
    for key, first, last, lon, lat in rows:
        if key == "sites" and lon is not None:
            low = (lon, lat)
        elif key == "sites-max" and lon is not None:
            high = (lon, lat)
        elif first is not None and last is not None:
            temporal[key] = (first, last)
    bbox = (*low, *high) if low is not None and high is not None else None
    return CatalogueFacts(temporal, bbox)


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What the catalogue says about one export dataset."""

    key: str
    title_nb: str
    title_en: str
    description_nb: str
    description_en: str
    themes: tuple[str, ...]  # EU data-theme codes
    keywords_nb: tuple[str, ...]
    keywords_en: tuple[str, ...]
    api_path: str  # the JSON route serving the same data, under the base URL
    frequency: str = "CONT"  # updated continuously


DATASET_INFO: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "sites",
        "Målesteder",
        "Measurement sites",
        "Stedene der sensorene står: navn, type (veinært, bybakgrunn, bygning, veistrekning),"
        " kommune og posisjon.",
        "The places sensors stand: name, kind (roadside, urban background, building, road"
        " section), municipality and position.",
        ("ENVI", "REGI"),
        ("målested", "sensor"),
        ("site", "sensor"),
        "/v1/sites",
        "IRREG",
    ),
    DatasetInfo(
        "devices",
        "Sensorer",
        "Sensors",
        "Sensorene i nettverket og deres offentlige egenskaper: målested, type, modell og status.",
        "The sensors of the network and their public properties: site, kind, model and status.",
        ("ENVI", "TECH"),
        ("sensor",),
        ("sensor",),
        "/v1/devices",
        "IRREG",
    ),
    DatasetInfo(
        "metrics",
        "Måleparametre",
        "Observed properties",
        "Hva som måles: parameter, kanonisk enhet, definisjon og fysiske grenser.",
        "What is measured: property, canonical unit, definition and physical bounds.",
        ("ENVI", "TECH"),
        ("måleparameter", "enhet"),
        ("observed property", "unit"),
        "/v1/metrics",
        "IRREG",
    ),
    DatasetInfo(
        "latest",
        "Siste målinger",
        "Latest values",
        "Siste måling fra hver tidsserie, med kvalitetsflagg (QARTOD).",
        "The latest reading of every time series, with its quality flag (QARTOD).",
        ("ENVI", "ENER", "TRAN"),
        ("sanntid", "luftkvalitet", "energi", "trafikk"),
        ("real time", "air quality", "energy", "traffic"),
        "/v1/latest",
    ),
    DatasetInfo(
        "readings",
        "Måleserier",
        "Time series of readings",
        "Målinger fra sensorene for luftkvalitet, vær, energi og trafikk, rå eller som"
        " minutt-, time- og døgnaggregater (døgn etter lokal tid). Trafikk publiseres bare"
        " som aggregater på minst 15 minutter: rå- og minuttfilene utelater den"
        " (bucket=1h eller 1d har den).",
        "Sensor readings of air quality, weather, energy and traffic, raw or as minute,"
        " hour and day aggregates (days in local time). Traffic is published only in"
        " aggregates of at least 15 minutes: the raw and 1-minute files leave it out"
        " (bucket=1h or 1d has it).",
        ("ENVI", "ENER", "TRAN"),
        ("luftkvalitet", "vær", "energi", "trafikk", "tidsserie"),
        ("air quality", "weather", "energy", "traffic", "time series"),
        "/v1/series",
    ),
    DatasetInfo(
        "aqi",
        "Europeisk luftkvalitetsindeks per time",
        "European Air Quality Index per hour",
        "EEAs europeiske luftkvalitetsindeks (2024-grenser) per målestasjon og time, fra"
        " timemidler av PM2.5, PM10, NO2, O3 og SO2; dominerende komponent og midlene som"
        " ga indeksen.",
        "The EEA European Air Quality Index (2024 bands) per station and hour, from hourly"
        " means of PM2.5, PM10, NO2, O3 and SO2; the dominant pollutant and the means that"
        " set the index.",
        ("ENVI", "HEAL"),
        ("luftkvalitet", "luftkvalitetsindeks", "svevestøv"),
        ("air quality", "air quality index", "particulate matter"),
        "/v1/aqi",
        "HOURLY",
    ),
    DatasetInfo(
        "energy-hourly",
        "Energibruk per bygning og time",
        "Energy use per building and hour",
        "Strømforbruk i kommunale bygg per time (kWh) med CO2-ekvivalenter og dekningsgrad.",
        "Electricity use of municipal buildings per hour (kWh) with CO2 equivalents and coverage.",
        ("ENER", "ENVI"),
        ("energi", "strøm", "klima"),
        ("energy", "electricity", "climate"),
        "/v1/energy/hourly",
        "HOURLY",
    ),
    DatasetInfo(
        "energy-daily",
        "Energibruk per bygning og døgn",
        "Energy use per building and day",
        "Strømforbruk i kommunale bygg per døgn (lokal tid, kWh) med CO2-ekvivalenter,"
        " utslippsfaktor og dekningsgrad.",
        "Electricity use of municipal buildings per local day (kWh) with CO2 equivalents,"
        " grid emission factor and coverage.",
        ("ENER", "ENVI"),
        ("energi", "strøm", "klima"),
        ("energy", "electricity", "climate"),
        "/v1/energy/daily",
        "DAILY",
    ),
    DatasetInfo(
        "traffic-hourly",
        "Trafikkmengde per teller og time",
        "Traffic volume per counter and hour",
        "Antall kjøretøy, andel tunge kjøretøy og gjennomsnittsfart per trafikkteller og time.",
        "Vehicles, heavy-vehicle share and mean speed per traffic counter and hour.",
        ("TRAN",),
        ("trafikk", "trafikkmengde"),
        ("traffic", "traffic volume"),
        "/v1/traffic/hourly",
        "HOURLY",
    ),
    DatasetInfo(
        "traffic-daily",
        "Trafikkmengde per teller og døgn",
        "Traffic volume per counter and day",
        "Antall kjøretøy, andel tunge kjøretøy og gjennomsnittsfart per trafikkteller og"
        " døgn (lokal tid).",
        "Vehicles, heavy-vehicle share and mean speed per traffic counter and local day.",
        ("TRAN",),
        ("trafikk", "trafikkmengde"),
        ("traffic", "traffic volume"),
        "/v1/traffic/daily",
        "DAILY",
    ),
    DatasetInfo(
        "traffic-adt",
        "Årsdøgntrafikk per teller",
        "Average daily traffic per counter",
        "Gjennomsnittlig døgntrafikk per trafikkteller over fullt rapporterte døgn siste"
        " 365 dager.",
        "Average daily traffic per counter over its fully reported days in the last 365 days.",
        ("TRAN",),
        ("trafikk", "ÅDT"),
        ("traffic", "AADT"),
        "/v1/traffic/adt",
        "DAILY",
    ),
)


def _lang(nb: str, en: str) -> list[dict[str, str]]:
    return [{"@value": nb, "@language": "nb"}, {"@value": en, "@language": "en"}]


def _ref(uri: str) -> dict[str, str]:
    return {"@id": uri}


def _concept(vocabulary: str, code: str) -> dict[str, Any]:
    """A value of an EU controlled vocabulary, saying which one it is in (skos:inScheme):
    DCAT-AP-NO's shapes check that, and a harvester need not fetch the vocabulary to
    see it."""
    return {
        "@id": vocabulary + code,
        "@type": "skos:Concept",
        "skos:inScheme": _ref(vocabulary.rstrip("/")),
    }


def licence() -> dict[str, Any]:
    """NLOD 2.0 as a dct:LicenseDocument of the EU licence vocabulary, with its text."""
    return {
        **_concept(LICENCE, "NLOD_2_0"),
        "@type": "dct:LicenseDocument",
        "rdfs:seeAlso": _ref(NLOD_URL),
    }


def _languages() -> list[dict[str, Any]]:
    return [_concept(LANGUAGE, "NOB"), _concept(LANGUAGE, "ENG")]


def publisher(settings: Settings) -> dict[str, Any]:
    """The publishing organisation by its Enhetsregisteret URI, with its organisation
    number (DCAT-AP-NO: dct:publisher is an Aktør with an identifier)."""
    return {
        "@id": BRREG_ENTITY + settings.publisher_orgnr,
        "@type": "foaf:Agent",
        "foaf:name": _lang(f"{settings.city} kommune", f"{settings.city} municipality"),
        "dct:identifier": settings.publisher_orgnr,
        "dct:type": _ref(PUBLISHER_TYPE),
    }


def municipality(settings: Settings) -> dict[str, Any]:
    """The municipality as a place: Kartverket's URI of it."""
    return {
        "@id": KARTVERKET_MUNICIPALITY + settings.municipality_number,
        "@type": "dct:Location",
        "skos:prefLabel": settings.city,
    }


def extent(base: str, bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    """Where the sites stand, as a box (WKT in WGS 84 lon/lat, GeoSPARQL's default CRS)
    and its centre: a place of our own, since the box is the sites', not the
    municipality's."""
    w, s, e, n = bbox
    ring = f"{w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}"
    return {
        "@id": f"{base}/v1/catalog#extent",
        "@type": "dct:Location",
        "dcat:bbox": {"@value": f"POLYGON(({ring}))", "@type": WKT},
        "dcat:centroid": {"@value": f"POINT({(w + e) / 2} {(s + n) / 2})", "@type": WKT},
    }


def period(first: datetime, last: datetime) -> dict[str, Any]:
    return {
        "@type": "dct:PeriodOfTime",
        "dcat:startDate": {"@value": _instant(first), "@type": "xsd:dateTime"},
        "dcat:endDate": {"@value": _instant(last), "@type": "xsd:dateTime"},
    }


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def contact_point(settings: Settings) -> dict[str, Any]:
    return {
        "@type": "vcard:Organization",
        "vcard:fn": f"{settings.city} kommune",
        "vcard:hasEmail": _ref(f"mailto:{settings.api_contact_email}"),
    }


def _distribution(base: str, info: DatasetInfo, fmt: str, settings: Settings) -> dict[str, Any]:
    url = f"{base}/v1/export/{info.key}?format={fmt}"
    return {
        "@id": f"{base}/v1/catalog#{info.key}-{fmt}",
        "@type": "dcat:Distribution",
        "dct:title": _lang(f"{info.title_nb} ({fmt.upper()})", f"{info.title_en} ({fmt.upper()})"),
        "dct:description": _lang(
            f"Strømmet eksport som {fmt.upper()}; filtrer med spørreparametre.",
            f"Streamed export as {fmt.upper()}; filter with query parameters.",
        ),
        "dcat:accessURL": _ref(f"{base}/v1/export/{info.key}"),
        "dcat:downloadURL": _ref(url),
        "dct:license": licence(),
        "dct:format": _concept(FILE_TYPE, FILE_TYPES[fmt]),
        "dcat:mediaType": _ref(IANA_MEDIA + MEDIA_TYPES[fmt]),
    }


def _api_distribution(base: str, info: DatasetInfo) -> dict[str, Any]:
    return {
        "@id": f"{base}/v1/catalog#{info.key}-api",
        "@type": "dcat:Distribution",
        "dct:title": _lang(f"{info.title_nb} (API)", f"{info.title_en} (API)"),
        "dct:description": _lang(
            "JSON fra det åpne API-et (OpenAPI-beskrivelse under /openapi.json).",
            "JSON from the open API (OpenAPI description at /openapi.json).",
        ),
        "dcat:accessURL": _ref(base + info.api_path),
        "dct:license": licence(),
        "dct:format": _concept(FILE_TYPE, FILE_TYPES["json"]),
        "dcat:mediaType": _ref(IANA_MEDIA + MEDIA_TYPES["json"]),
        "dcat:accessService": _ref(f"{base}/v1/catalog#api"),
    }


def dataset_entry(
    base: str, info: DatasetInfo, settings: Settings, facts: CatalogueFacts | None = None
) -> dict[str, Any]:
    uri = f"{base}/v1/catalog#{info.key}"
    facts = facts or CatalogueFacts()
    distributions = [_api_distribution(base, info)] + [
        _distribution(base, info, fmt, settings) for fmt in DATASETS[info.key].formats
    ]
    optional: dict[str, Any] = {}
    if info.key in facts.temporal:
        optional["dct:temporal"] = period(*facts.temporal[info.key])
    spatial = [municipality(settings)]
    if facts.bbox is not None:
        spatial.append(extent(base, facts.bbox))
    return {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": uri,
        "dct:title": _lang(
            f"{info.title_nb}, {settings.city}", f"{info.title_en}, {settings.city}"
        ),
        "dct:description": _lang(info.description_nb, info.description_en),
        "dcat:theme": [_concept(DATA_THEME, code) for code in info.themes],
        "dcat:keyword": [{"@value": k, "@language": "nb"} for k in info.keywords_nb]
        + [{"@value": k, "@language": "en"} for k in info.keywords_en],
        "dct:publisher": publisher(settings),
        "dcat:contactPoint": contact_point(settings),
        "dct:language": _languages(),
        "dct:accrualPeriodicity": _concept(FREQUENCY, info.frequency),
        "dct:accessRights": _concept(ACCESS_RIGHT, "PUBLIC"),
        "dcat:landingPage": _ref(base + info.api_path),
        "dct:license": licence(),
        "dct:spatial": spatial,
        **optional,
        "dcat:distribution": distributions,
    }


def catalogue(
    settings: Settings, base_url: str, facts: CatalogueFacts | None = None
) -> dict[str, Any]:
    """The DCAT-AP-NO catalogue as a JSON-LD document; ``base_url`` is the API's
    public root (``settings.api_public_url`` or the request's), without ``/v1``;
    ``facts`` what the data says of its range and place (`facts_query`)."""
    base = base_url.rstrip("/")
    city = settings.city
    return {
        "@context": CONTEXT,
        "@id": f"{base}/v1/catalog",
        "@type": "dcat:Catalog",
        "dct:identifier": f"{base}/v1/catalog",
        "dct:title": _lang(
            f"Åpne miljødata for {city} (smartby)", f"Open environmental data for {city} (smartby)"
        ),
        "dct:description": _lang(
            f"Sensordata for luftkvalitet, vær, energi og trafikk i {city}, med indikatorer"
            " (luftkvalitetsindeks, energibruk per bygning, trafikkmengde), som åpne data"
            f" under NLOD 2.0. {attribution(city)}.",
            f"Sensor data on air quality, weather, energy and traffic in {city}, with"
            " indicators (air quality index, energy per building, traffic volume), as open"
            f" data under NLOD 2.0. {attribution(city)}.",
        ),
        "dct:publisher": publisher(settings),
        "dcat:contactPoint": contact_point(settings),
        "dct:language": _languages(),
        "dct:license": licence(),
        "dct:rights": {
            "@type": "dct:RightsStatement",
            "rdfs:label": attribution(city),
        },
        "foaf:homepage": _ref(f"{base}/v1"),
        "dcat:service": [
            {
                "@id": f"{base}/v1/catalog#api",
                "@type": "dcat:DataService",
                "dct:identifier": f"{base}/v1/catalog#api",
                "dct:title": _lang(f"Åpent data-API for {city}", f"Open data API of {city}"),
                "dcat:endpointURL": _ref(f"{base}/v1"),
                "dcat:endpointDescription": _ref(f"{base}/openapi.json"),
                "dct:license": licence(),
                "dct:publisher": publisher(settings),
                "dcat:contactPoint": contact_point(settings),
                "dcat:servesDataset": [_ref(f"{base}/v1/catalog#{i.key}") for i in DATASET_INFO],
            }
        ],
        "dct:spatial": [municipality(settings)],
        "dcat:dataset": [dataset_entry(base, info, settings, facts) for info in DATASET_INFO],
    }


def catalogue_example(settings: Settings) -> dict[str, Any]:
    """The catalogue as the OpenAPI document shows it: built as the route builds it,
    with a week of data at the municipality's sites."""
    first = datetime(2026, 11, 1, tzinfo=UTC)
    last = datetime(2026, 11, 8, tzinfo=UTC)
    facts = CatalogueFacts({key: (first, last) for key, d in DATASETS.items() if d.time_column})
    return catalogue(settings, settings.api_public_url or "https://data.example.no", facts)
