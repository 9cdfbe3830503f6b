"""The site's pages, one module per page a reader can name, and their paths."""

from __future__ import annotations

from web.pages.air_now import air_now, air_now_stations
from web.pages.devices import device, devices
from web.pages.energy import building, energy
from web.pages.opendata import opendata, opendata_request
from web.pages.station import station
from web.pages.status import status
from web.pages.traffic import counter, traffic
from web.site import Handler

ROUTES: tuple[tuple[str, Handler], ...] = (
    ("/", air_now),
    ("/air-now/stations", air_now_stations),
    ("/stations/{site_id}", station),
    ("/energy", energy),
    ("/energy/{site_id}", building),
    ("/traffic", traffic),
    ("/traffic/{device_id}", counter),
    ("/data", opendata),
    ("/data/request", opendata_request),
    ("/devices", devices),
    ("/devices/{device_id}", device),
    ("/status", status),
)
