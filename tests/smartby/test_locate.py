"""Commands find the database of a running `smartby up` through its stack record; a
configured SMARTBY_DATABASE_URL wins, and a dead supervisor's record is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from smartby.locate import database_url, with_running_stack
from stack.running import RunningStack, write_running_stack

STACK_URL = "postgresql://smartby:pw@127.0.0.1:55999/smartby"


def settings(data_dir: Path, **values: object) -> Settings:
    return Settings(env="test", data_dir=data_dir, **values)  # type: ignore[arg-type]


def record(data_dir: Path, pid: int) -> None:
    write_running_stack(
        data_dir, RunningStack(pid=pid, database_url=STACK_URL, mqtt_host="127.0.0.1", mqtt_port=1)
    )


def test_a_running_stack_names_the_database(tmp_path: Path) -> None:
    record(tmp_path, os.getpid())
    assert database_url(settings(tmp_path)) == STACK_URL
    found = with_running_stack(settings(tmp_path))
    assert found.database_url is not None
    assert found.database_url.get_secret_value() == STACK_URL


def test_a_configured_url_wins_over_the_running_stack(tmp_path: Path) -> None:
    record(tmp_path, os.getpid())
    configured = "postgresql://elsewhere@127.0.0.1:5432/city"
    assert database_url(settings(tmp_path, database_url=configured)) == configured


def test_a_dead_supervisors_record_is_no_database(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    record(tmp_path, int(gone.stdout))
    with pytest.raises(SettingsError, match="smartby up"):
        database_url(settings(tmp_path))
    assert with_running_stack(settings(tmp_path)).database_url is None
