"""Shared test setup: real services come from the `tests.fixtures.services` plugin."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.secure",
    "tests.fixtures.logs",
    "tests.fixtures.simulated",
    "tests.fixtures.profiles",
    "tests.fixtures.network_server",
    "tests.fixtures.push",
]
