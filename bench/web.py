"""Website benchmark: what each page weighs and how soon it shows, in Chromium.

    .venv/bin/python -m bench.web              # a month of Narvik, 5 cold loads a page
    .venv/bin/python -m bench.web --quick      # two days, 2 loads a page (smoke test)

Everything runs on this machine: a private PostgreSQL (TimescaleDB when installed)
loaded with `--days` of simulated Narvik history through ingest's own pipeline, the
API (which serves the website) in a uvicorn subprocess with one worker, and Debian's
Chromium driven by Playwright.  Each page is loaded `--rounds` times, each time in a
fresh browser context (an empty cache: a first visit), and the median is reported:

  transfer   bytes over the wire, compressed, of the page and everything it loads
             (the Resource Timing API's transferSize), map tiles excluded: they are
             blocked, as on a machine without internet;
  load       navigation start to the end of the load event;
  FCP        first contentful paint.

The baseline, measured in the same run, is /docs: a static page of the same server
(Swagger UI, vendored), which touches no database.  DESIGN.md's budget: `/` at most
300 KB compressed without tiles, first contentful paint at most 1 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import bench_settings, load_month, say, scratch_database
from stack.ports import free_port

BUDGET_KB = 300.0
BUDGET_FCP_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: transfer size, load and FCP of the page, from the browser's own timing entries
MEASURE = """() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const resources = performance.getEntriesByType("resource");
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    return {
        transfer: nav.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
        requests: 1 + resources.filter(r => r.transferSize > 0).length,
        load: nav.loadEventEnd - nav.startTime,
        fcp: paint ? paint.startTime : null,
    };
}"""


def serve(url: str, port: int) -> None:
    """The API and its website as deployed: one uvicorn worker."""
    import uvicorn

    from api.app import create_app

    app = create_app(bench_settings(url, port), database_url=url)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out = open(log, "ab")  # noqa: SIM115 - the child keeps it
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.web", "--serve", url, str(self.port)],
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.base + "/v1", timeout=2):  # noqa: S310
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    message = f"the API did not start:\n{log.read_text()[-3000:]}"
                    raise RuntimeError(message) from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def pages(base: str) -> list[str]:
    """Every page, with a real station (one measuring ozone), building, counter, device."""
    import orjson

    def get(path: str):
        with urllib.request.urlopen(base + path, timeout=10) as response:  # noqa: S310
            return orjson.loads(response.read())

    with_o3 = sorted(s["site_id"] for s in get("/v1/series?metric=o3")["data"] if s["site_id"])
    building = get("/v1/sites?kind=building")["features"][0]["id"]
    counter = get("/v1/devices?kind=traffic")["data"][0]["id"]
    device = get("/v1/devices?kind=air_quality")["data"][0]["id"]
    return [
        "/",
        "/?lang=en",
        f"/stations/{with_o3[0]}",
        f"/stations/{with_o3[0]}?range=30d",
        "/energy",
        f"/energy/{building}",
        "/traffic",
        f"/traffic/{counter}",
        "/data",
        "/devices",
        f"/devices/{device}",
        "/status",
    ]


@dataclass
class Measured:
    path: str
    transfer: list[float]
    requests: list[float]
    load: list[float]
    fcp: list[float]

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def measure(base: str, paths: list[str], rounds: int) -> list[Measured]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for path in ["/docs", *paths]:
                found = Measured(path, [], [], [], [])
                for round_ in range(rounds + 1):  # the first warms the server up
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    # map tiles are excluded: blocked, as on a machine without internet
                    page.route(
                        lambda url: not url.startswith(base),
                        lambda route: route.abort(),
                    )
                    page.goto(base + path, wait_until="load")
                    page.wait_for_timeout(100)  # the paint entries settle after load
                    sample = page.evaluate(MEASURE)
                    context.close()
                    if round_ == 0:
                        continue
                    found.transfer.append(sample["transfer"] / 1024)
                    found.requests.append(sample["requests"])
                    found.load.append(sample["load"])
                    if sample["fcp"] is not None:
                        found.fcp.append(sample["fcp"])
                say(f"  {path}: {found.median(found.load):.0f} ms")
                results.append(found)
        finally:
            browser.close()
    return results


def table(results: list[Measured]) -> str:
    baseline = results[0]
    base_load = baseline.median(baseline.load)
    base_fcp = baseline.median(baseline.fcp)
    lines = [
        f"{'page (median of cold loads)':40} {'KB':>7} {'requests':>8} {'load ms':>8}"
        f" {'FCP ms':>7} {'load/docs':>9} {'FCP/docs':>8}  budget",
        "-" * 104,
    ]
    for r in results:
        kb, load, fcp = r.median(r.transfer), r.median(r.load), r.median(r.fcp)
        budget = ""
        if r.path == "/":
            met = kb <= BUDGET_KB and fcp <= BUDGET_FCP_MS
            budget = f"<= {BUDGET_KB:g} KB, FCP <= {BUDGET_FCP_MS:g} ms: " + (
                "met" if met else "MISSED"
            )
        elif r is baseline:
            budget = "(baseline: static, no database)"
        lines.append(
            f"{r.path:40} {kb:7.1f} {r.median(r.requests):8.0f} {load:8.0f} {fcp:7.0f}"
            f" {load / base_load:8.2f}x {fcp / base_fcp:7.2f}x  {budget}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=float, default=30, help="days of history to load")
    parser.add_argument("--rounds", type=int, default=5, help="cold loads per page")
    parser.add_argument("--quick", action="store_true", help="2 days, 2 loads a page")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"bench.web: {CHROMIUM} is missing: run scripts/setup")
    days = 2.0 if args.quick else args.days
    rounds = 2 if args.quick else args.rounds

    with scratch_database("web") as (root, url):
        load_month(url, days)
        server = Server(url, root / "api.log")
        try:
            say(f"website at {server.base}; {rounds} cold loads a page in Chromium")
            results = measure(server.base, pages(server.base), rounds)
        finally:
            server.stop()
    print(table(results))
    print(
        f"\nmachine: {os.cpu_count()} cores; {days:g} days of simulated Narvik; Chromium "
        f"headless, 1280x900, no throttling, an empty cache per load; transfer = compressed "
        f"bytes of the page and all it loads, map tiles blocked and excluded; the API and "
        f"website: one uvicorn worker"
    )


if __name__ == "__main__":
    main()
