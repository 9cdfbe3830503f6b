"""The attack tests' table, printed at the end of the run: attack, messages, lost."""

from __future__ import annotations

import pytest

#: (attack, messages the broker acknowledged, lost), appended by each attack test
ATTACKS: list[tuple[str, int, int]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ATTACKS:
        return
    terminalreporter.write_line("broker attacks: attack | messages | lost")
    for attack, messages, lost in ATTACKS:
        terminalreporter.write_line(f"  {attack} | {messages} | {lost}")
