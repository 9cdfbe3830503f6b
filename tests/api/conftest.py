"""Clients of the API app: on the shared simulated database for reads (never written
to), and on the clean per-test database for the admin routes; and the API as a real
server process (`api_process`), where sockets, concurrency and slow readers matter."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # starlette's TestClient prefers httpx2; httpx works the same for these tests
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from bench.api_storm import ApiProcess
from core.settings import Settings
from tests.api.sta_data import StaData, sta_database
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData

ADMIN_KEY = "admin-key-0123456789abcdef"
READER_KEY = "reader-key-0123456789abcdef"
#: open reads in these tests are not what is being limited (except where they are)
UNLIMITED = "1000000/minute"

ClientFactory = Callable[..., TestClient]

#: lines for the end of the run (the hostile fuzz reports how many requests it sent)
SUMMARY_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def simulated_settings(services: Services, simulated: SimulatedData) -> Settings:
    return services.settings(database_url=simulated.url, api_rate_limit=UNLIMITED)


@pytest.fixture(scope="module")
def client(simulated_settings: Settings) -> Iterator[TestClient]:
    """The app on the simulated database, started once per module (read-only use)."""
    with TestClient(create_app(simulated_settings)) as test_client:
        yield test_client


@pytest.fixture
def make_client(services: Services) -> Iterator[ClientFactory]:
    """Start an app with settings overrides; stopped at the end of the test."""
    started: list[TestClient] = []

    def make(database_url: str, **overrides: object) -> TestClient:
        values: dict[str, object] = {"api_rate_limit": UNLIMITED, **overrides}
        settings = services.settings(database_url=database_url, **values)
        test_client = TestClient(create_app(settings))
        test_client.__enter__()
        started.append(test_client)
        return test_client

    yield make
    for test_client in started:
        test_client.__exit__(None, None, None)


ServerFactory = Callable[..., ApiProcess]


@pytest.fixture
def api_process(simulated: SimulatedData, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start ``smartby api`` in a subprocess, as deployed (uvicorn with the server
    path of `api.server`), on the simulated database unless told otherwise, with
    settings given as keywords (``api_send_timeout_s="2"``); stopped at the end of
    the test.  Its log is ``server.log`` (see `server_log`)."""
    started: list[ApiProcess] = []

    def start(database_url: str | None = None, **settings: str) -> ApiProcess:
        values = {"api_rate_limit": UNLIMITED, **settings}
        log = tmp_path / f"api-{len(started)}.log"
        server = ApiProcess(database_url or simulated.url, log, **values)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def server_log(server: ApiProcess) -> str:
    return server.log.read_text(errors="replace")


def assert_quiet_log(server: ApiProcess) -> None:
    """No traceback and no error line in the server's log: client errors are answered,
    not logged as failures (a cut-off is one warning line)."""
    text = server_log(server)
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if "ERROR" in line]
    assert not errors, errors[:5]


@pytest.fixture(scope="module")
def sta_data(services: Services) -> StaData:
    """The small SensorThings database shaped like OGC's test suite fixture, seeded
    afresh for each module that uses it (`tests.api.sta_data`)."""
    return sta_database(services)


@pytest.fixture(scope="module")
def sta_client(services: Services, sta_data: StaData) -> Iterator[TestClient]:
    settings = services.settings(database_url=sta_data.url, api_rate_limit=UNLIMITED)
    with TestClient(create_app(settings)) as test_client:
        yield test_client
