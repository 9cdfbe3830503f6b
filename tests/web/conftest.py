"""The website on the simulated database: a test client for the server-rendered pages,
and for the browser tests a real server and Debian's Chromium driven by Playwright,
each started once for the session (read-only use of the shared simulated data)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, sync_playwright

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.server import server_config
from core.settings import Settings
from stack.ports import free_port
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData

#: page loads in these tests are not what is being limited
UNLIMITED = "1000000/minute"


@pytest.fixture(scope="session")
def site_settings(services: Services, simulated: SimulatedData) -> Settings:
    return services.settings(
        database_url=simulated.url,
        api_rate_limit=UNLIMITED,
        grafana_url="http://grafana.example.invalid:3000",
    )


@pytest.fixture(scope="module")
def site(site_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(site_settings)) as client:
        yield client


# ---------------------------------------------------------------- a real browser

#: Debian's chromium (scripts/setup installs it); never a browser Playwright downloads
CHROMIUM = Path("/usr/bin/chromium")
#: headless, and quiet: on a closed network Chromium's own background connections (sync,
#: component updates, QUIC probes) are refused and would only add noise
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


@dataclass(frozen=True)
class LiveSite:
    base: str  # http://127.0.0.1:<port>
    settings: Settings


@pytest.fixture(scope="session")
def live_site(site_settings: Settings) -> Iterator[LiveSite]:
    """The API and the website in a real uvicorn server on a free port, in a thread,
    started once for the session."""
    port = free_port()
    server = uvicorn.Server(server_config(create_app(site_settings), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, name="live-site", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the website's server did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield LiveSite(f"http://127.0.0.1:{port}", site_settings)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium for the session.  A missing browser fails the run: scripts/setup
    installs Debian's `chromium` package."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup (Debian package chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
