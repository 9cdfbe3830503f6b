"""What ``smartby up`` records in its data folder.

- ``<data_dir>/stack.json``: written while ``smartby up`` runs, read by the commands
  that look for its services (``smartby/locate.py``), and ignored once its
  supervisor is gone.  It also names the services' processes, so that the next
  ``up`` after a supervisor killed with ``kill -9`` can wait for (or stop) the ones
  still finishing their work, instead of colliding with them.
- ``<data_dir>/ports.json``: the ports the stack listens on, kept after it stops, so
  that the next run listens on the same ones: devices are configured with the MQTT
  port, and people bookmark the API's.

Both are 0600: ``stack.json`` holds the database password.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stack.process import ProcessRef

STACK_FILE = "stack.json"
PORTS_FILE = "ports.json"


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
    #: the public broker: anonymous readers of the SensorThings stream (v1.1/#)
    mqtt_public_port: int | None = None
    #: the broker's TLS listener, for devices, and the CA file that verifies it
    mqtt_tls_port: int | None = None
    mqtt_ca_file: str | None = None
    #: the supervisor's start time (clock ticks after boot): once it is gone, another
    #: process that gets its pid does not pass for it
    pid_start: int | None = None
    #: its services' processes: name -> [pid, start time], in start order
    processes: dict[str, list[int]] = field(default_factory=dict)

    def supervisor_alive(self) -> bool:
        if self.pid_start is not None:
            return ProcessRef(self.pid, self.pid_start).alive()
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, owned by someone else
        return True

    def process_refs(self) -> dict[str, ProcessRef]:
        return {name: ProcessRef(pid, start) for name, (pid, start) in self.processes.items()}


def write_running_stack(data_dir: Path, stack: RunningStack) -> Path:
    path = data_dir / STACK_FILE
    _write_private_json(path, asdict(stack))
    return path


def read_stack_record(data_dir: Path) -> RunningStack | None:
    """The stack file, whether its supervisor is alive or not (None if absent)."""
    try:
        raw = json.loads((data_dir / STACK_FILE).read_text())
        return RunningStack(**raw)
    except (OSError, ValueError, TypeError):
        return None


def read_running_stack(data_dir: Path) -> RunningStack | None:
    """The stack file, if its supervisor is still alive."""
    stack = read_stack_record(data_dir)
    return stack if stack is not None and stack.supervisor_alive() else None


def clear_running_stack(data_dir: Path) -> None:
    (data_dir / STACK_FILE).unlink(missing_ok=True)


def read_ports(data_dir: Path) -> dict[str, int]:
    """The ports the stack of ``data_dir`` last listened on, by service."""
    try:
        raw = json.loads((data_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and 0 < v < 65536}


def write_ports(data_dir: Path, ports: Mapping[str, int]) -> Path:
    path = data_dir / PORTS_FILE
    _write_private_json(path, dict(ports))
    return path


def _write_private_json(path: Path, value: object) -> None:
    """Atomically (a reader never sees half a file), readable only by us."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)
