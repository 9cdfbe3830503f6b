"""Open data (``/data``): a download builder.  Pick a dataset, places or what is
measured, a range, a bucket and a format; the page shows the export URL, the same
request for curl and for pandas, and the licence in plain words.  For the student,
the journalist and the developer who want the numbers themselves.

The builder is an ordinary form (GET): without scripts, "Show the request" reloads
the page with the answer; with scripts the answer (``/data/request``, the same
template) follows every change.  The datasets, their formats and whether they take a
time range come from /v1/export.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from web.i18n import N_
from web.pages.energy import local_midnight
from web.site import PageContext
from web.source import api_time

DATASETS: dict[str, str] = {
    "aqi": N_("Air quality index per station and hour"),
    "readings": N_("Measurements: readings or their averages"),
    "latest": N_("The latest value of every series"),
    "energy-daily": N_("Energy per building and day"),
    "energy-hourly": N_("Energy per building and hour"),
    "traffic-daily": N_("Traffic per counter and day"),
    "traffic-hourly": N_("Traffic per counter and hour"),
    "traffic-adt": N_("Average daily traffic per counter"),
    "sites": N_("Sites: where the sensors are"),
    "devices": N_("Devices"),
    "metrics": N_("What is measured, and in which unit"),
}
BUCKETS: dict[str, str] = {
    "1h": N_("Hourly averages"),
    "1d": N_("Daily averages"),
    "1m": N_("Averages per minute"),
    "raw": N_("Every reading, with its quality flag"),
}
FORMATS: dict[str, str] = {
    "csv": N_("CSV (spreadsheets)"),
    "parquet": N_("Parquet (data analysis)"),
    "geojson": N_("GeoJSON (maps)"),
}
#: traffic is only published in aggregates of at least 15 minutes
AGGREGATE_BUCKETS = ("1h", "1d")
#: which filters apply to which dataset: what /v1/export/{dataset} takes
SITE_FILTERED = frozenset(DATASETS) - {"metrics"}
METRIC_FILTERED = frozenset({"readings", "latest"})


@dataclass(slots=True)
class Choice:
    dataset: str
    format: str
    site: str
    metric: str
    bucket: str
    start: date | None
    end: date | None


@dataclass(slots=True)
class ExportRequest:
    """The export the choice makes, written three ways."""

    url: str
    curl: str
    pandas: str
    notes: list[str]


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _choice(context: PageContext, index: dict[str, Any]) -> Choice:
    q = context.request.query_params
    dataset = q.get("dataset", "aqi")
    if dataset not in index:
        dataset = "aqi"
    formats = index[dataset]["formats"]
    fmt = q.get("format", "csv")
    today = context.formats.local(context.now).date()
    start = _date(q.get("from"))
    end = _date(q.get("to"))
    if index[dataset]["time_series"]:
        end = end or today + timedelta(days=1)
        start = start or end - timedelta(days=7)
    else:
        start = end = None
    return Choice(
        dataset,
        fmt if fmt in formats else formats[0],
        q.get("site", ""),
        q.get("metric", "") if dataset in METRIC_FILTERED else "",
        q.get("bucket", "1h") if q.get("bucket", "1h") in BUCKETS else "1h",
        start,
        end,
    )


def _request(
    context: PageContext,
    choice: Choice,
    metrics: dict[str, Any],
    sites: dict[str, Any],
) -> ExportRequest:
    params: dict[str, str] = {"format": choice.format}
    notes: list[str] = []
    if choice.start is not None and choice.end is not None:
        start, end = choice.start, choice.end
        if end <= start:
            end = start + timedelta(days=1)
            notes.append(context.gettext("The end must come after the start; it was moved."))
        params["from"] = api_time(local_midnight(context, start))
        params["to"] = api_time(local_midnight(context, end))
    if choice.site and choice.dataset in SITE_FILTERED:
        params["site"] = choice.site
    if choice.metric and choice.dataset in METRIC_FILTERED:
        params["metric"] = choice.metric
    if choice.dataset == "readings":
        bucket = choice.bucket
        # a finer bucket only where the selection cannot hold a traffic series (the
        # API refuses it with a 400): a metric of another domain, or a site with no
        # traffic counter
        domain = metrics.get(choice.metric, {}).get("domain")
        kind = sites.get(choice.site, {}).get("properties", {}).get("kind")
        without_traffic = (domain is not None and domain != "traffic") or (
            domain is None and kind is not None and kind != "road_section"
        )
        if bucket not in AGGREGATE_BUCKETS and not without_traffic:
            bucket = "1h"
            notes.append(
                context.gettext(
                    "Traffic is only published in aggregates of at least 15 minutes, and "
                    "this choice can hold traffic: the bucket is one hour."
                )
            )
        params["bucket"] = bucket
    base = str(context.request.base_url).rstrip("/")
    url = f"{base}/v1/export/{choice.dataset}?{urlencode(params, safe=':')}"
    extension = {"csv": "csv", "parquet": "parquet", "geojson": "geojson"}[choice.format]
    filename = f"{choice.dataset}.{extension}"
    reader = {
        "csv": f"pd.read_csv({url!r})",
        "parquet": f"pd.read_parquet({url!r})",
        "geojson": f"pd.json_normalize(pd.read_json({url!r})['features'])",
    }[choice.format]
    pandas = f"import pandas as pd\n\ndata = {reader}\n"
    if choice.format == "geojson":
        pandas = (
            "import json\nfrom urllib.request import urlopen\n\nimport pandas as pd\n\n"
            f"with urlopen({url!r}) as response:\n"
            "    document = json.load(response)\n"
            "data = pd.json_normalize(document['features'])\n"
        )
    return ExportRequest(url, f"curl -fL -o {filename} {shlex.quote(url)}", pandas, notes)


async def _values(context: PageContext) -> dict[str, Any]:
    reader = context.reader
    index = {d["id"]: d for d in (await reader.get("/v1/export"))["data"]}
    metrics = {m["key"]: m for m in (await reader.get("/v1/metrics"))["data"]}
    sites = (await reader.get("/v1/sites"))["features"]
    choice = _choice(context, index)
    return {
        "index": index,
        "datasets": {k: v for k, v in DATASETS.items() if k in index},
        "buckets": BUCKETS,
        "formats": FORMATS,
        "metrics": metrics,
        "sites": sorted(sites, key=lambda s: s["properties"]["name"]),
        "choice": choice,
        "answer": _request(context, choice, metrics, {s["id"]: s for s in sites}),
        "site_filtered": SITE_FILTERED,
        "metric_filtered": METRIC_FILTERED,
        "attribution": (await reader.get("/v1"))["meta"]["attribution"],
        "base": str(context.request.base_url).rstrip("/"),
        "today": context.formats.local(context.now).date(),
    }


async def opendata(context: PageContext) -> Response:
    return context.render("data.html", **(await _values(context)))


async def opendata_request(context: PageContext) -> Response:
    return context.render("data_request.html", **(await _values(context)))
