"""Status (``/status``): is the platform taking in data?  Ingest running, readings
per minute over the last hour, the newest value of each domain, devices online
against registered, and what was quarantined.  For the operator on duty, and for
anyone who wonders why a number looks old."""

from __future__ import annotations

from starlette.responses import Response

from web.charts import Chart, epoch
from web.formatting import parse_time
from web.i18n import N_
from web.pages.devices import REASONS, STATES
from web.site import PageContext

DOMAINS: dict[str, str] = {
    "air_quality": N_("Air quality"),
    "weather": N_("Weather"),
    "energy": N_("Energy"),
    "traffic": N_("Traffic"),
}


async def status(context: PageContext) -> Response:
    document = await context.reader.get("/v1/status")
    data = document["data"]
    minutes = data["readings_per_minute"]
    chart = Chart(
        "per-minute",
        "bars",
        context.gettext("readings"),
        "/v1/status",
        60,
        context.gettext("Readings per minute"),
        x=[epoch(m["minute"]) for m in minutes],
        y=[m["readings"] for m in minutes],
    )
    return context.render(
        "status.html",
        platform=data,
        taken=parse_time(data["time"]),
        chart=chart,
        minutes=minutes,
        domains=DOMAINS,
        states=STATES,
        reasons=REASONS,
        grafana_url=context.settings.grafana_url,
        parse_time=parse_time,
    )
