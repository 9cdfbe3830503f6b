"""Clients of the API app: on the shared simulated database for reads (never written
to), and on the clean per-test database for the admin routes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

with warnings.catch_warnings():
    # starlette's TestClient prefers httpx2; httpx works the same for these tests
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData

ADMIN_KEY = "admin-key-0123456789abcdef"
READER_KEY = "reader-key-0123456789abcdef"
#: open reads in these tests are not what is being limited (except where they are)
UNLIMITED = "1000000/minute"

ClientFactory = Callable[..., TestClient]


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
