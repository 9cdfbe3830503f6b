"""The website on the simulated database: a test client for the server-rendered pages
(read-only use), shared by the module."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
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
