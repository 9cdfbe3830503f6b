"""What the website tests share: the pages to visit (found from /v1, so every kind is
there) and a few readers of the HTML they get back."""

from __future__ import annotations

import html as html_module
import json
import re
from html.parser import HTMLParser
from typing import Any, Protocol


class Getter(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...


def site_pages(client: Getter) -> list[str]:
    """Every page of the site, with a real station, building, counter and device."""
    air = sorted({d["site_id"] for d in client.get("/v1/devices?kind=air_quality").json()["data"]})
    aqi = {r["site_id"] for r in client.get("/v1/aqi").json()["data"]}
    with_o3 = {
        s["site_id"] for s in client.get("/v1/series?metric=o3").json()["data"] if s["site_id"]
    }
    station = sorted(set(air) & aqi & with_o3)[0]
    building = client.get("/v1/sites?kind=building").json()["features"][0]["id"]
    counter = client.get("/v1/devices?kind=traffic").json()["data"][0]["id"]
    return [
        "/",
        f"/stations/{station}",
        "/energy",
        f"/energy/{building}",
        "/traffic",
        f"/traffic/{counter}",
        "/data",
        "/devices",
        "/devices/aq-sentrum",
        "/status",
    ]


def chart_specs(page: str) -> dict[str, dict[str, Any]]:
    """The JSON specs of the page's charts, by chart id."""
    specs = [
        json.loads(raw)
        for raw in re.findall(
            r'<script type="application/json" class="chart-spec">(.*?)</script>', page, re.S
        )
    ]
    return {s["id"]: s for s in specs}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    """The page's text without tags, scripts or styles, whitespace collapsed."""
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def attribute_values(page: str, name: str) -> list[str]:
    return [html_module.unescape(v) for v in re.findall(rf'\b{name}="([^"]*)"', page)]
