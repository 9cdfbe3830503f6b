"""The worker-alone restart figures at the end of the run, for the README."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.ingest.test_broker_restart import pytest_terminal_summary_lines

    for line in pytest_terminal_summary_lines():
        terminalreporter.write_line(line)
