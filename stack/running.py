"""The running-stack record, ``<data_dir>/stack.json``: written while ``smartby up``
runs, read by the commands that look for its services (``smartby/locate.py``), and
ignored once its supervisor is gone."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What ``smartby up`` writes to ``<data_dir>/stack.json`` while it runs, so that
    other commands (``smartby db migrate``, ``smartby simulate``) find its services."""

    pid: int
    database_url: str
    mqtt_host: str
    mqtt_port: int
    api_url: str | None = None
    metrics_url: str | None = None
    #: the website, which the API process serves
    web_url: str | None = None


def write_running_stack(data_dir: Path, stack: RunningStack) -> Path:
    path = data_dir / "stack.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    tmp.chmod(0o600)  # it holds the database password
    tmp.replace(path)
    return path


def read_running_stack(data_dir: Path) -> RunningStack | None:
    """The stack file, if its supervisor is still alive."""
    path = data_dir / "stack.json"
    try:
        raw = json.loads(path.read_text())
        stack = RunningStack(**raw)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(stack.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return stack


def clear_running_stack(data_dir: Path) -> None:
    (data_dir / "stack.json").unlink(missing_ok=True)
