"""`smartby up` fixtures for the composition root's tests, and the fault tests' figures
at the end of the run."""

from __future__ import annotations

import pytest

from tests.fixtures.up import data_dir

__all__ = ["data_dir"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.smartby.test_faults import pytest_terminal_summary_lines

    for line in pytest_terminal_summary_lines():
        terminalreporter.write_line(line)
