"""Every command of the README's Operations section is run here, or checked where it
needs a Docker engine (there is none where this project is developed):

- ``docker compose`` subcommands: docker-compose accepts them against the real
  compose file, and the services they name exist;
- ``docker compose exec SERVICE PROGRAM ...``: the program runs on this machine with
  the container paths mapped back through the service's mounts (promtool, amtool),
  against a real Alertmanager for ``amtool alert``;
- ``curl``: against a real Caddy on the production Caddyfile in front of
  ``smartby api``, with the CA certificate the README says to take out of Caddy;
- anything else a person is told to run: run as written.

A command this test does not know fails it, so a new one needs a check."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from bench.api_storm import ApiProcess
from stack.ports import free_port
from tests.deploy.caddy import Caddy
from tests.fixtures.simulated import SimulatedData
from tests.test_compose import ENV_EXAMPLE, bind_sources, docker_compose, env_example, run_config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def operations_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Operations\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def commands() -> list[str]:
    """The lines of the section's ```sh blocks (indented or not), in order."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", operations_section(), re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


COMMANDS = commands()


def compose_args(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[:2] == ["docker", "compose"], command
    return words[2:]


def service(name: str) -> dict[str, Any]:
    assert name in COMPOSE["services"], f"no service {name!r} in docker-compose.yml"
    found: dict[str, Any] = COMPOSE["services"][name]
    return found


def host_path(name: str, container_path: str) -> Path:
    """Where a container path of a service is in this repository (its bind mounts)."""
    for source, target in bind_sources(service(name)):
        if source.startswith(".") and (
            container_path == target or container_path.startswith(target.rstrip("/") + "/")
        ):
            return ROOT / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not a repository file mounted into {name}")


def run(args: list[str], cwd: Path = ROOT, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: scripts/setup installs it")
    return found


def test_the_section_has_the_steps() -> None:
    section = operations_section()
    for step in ("The host", "The settings", "Start", "The edge", "Check TLS", "Alerting"):
        assert f"**{step}.**" in section
    # the other half of issue 15 has its place
    assert "**Backups.**" in section
    assert "**Least privilege.**" in section
    assert len(COMMANDS) >= 12


# ------------------------------------------------------------------ the commands


def test_settings_commands() -> None:
    assert "cp .env.example .env" in COMMANDS
    assert ENV_EXAMPLE.is_file()
    assert "openssl rand -hex 24" in COMMANDS
    result = run(shlex.split("openssl rand -hex 24"))
    assert result.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{48}\n", result.stdout)


def test_compose_commands_are_accepted() -> None:
    seen = 0
    for command in COMMANDS:
        if not command.startswith("docker compose ") or " exec " in command or " cp " in command:
            continue
        seen += 1
        args = compose_args(command)
        if args == ["config", "-q"]:
            result = run_config(ENV_EXAMPLE, env_example())
            assert result.returncode == 0, result.stderr
            continue
        subcommand, options = args[0], args[1:]
        helped = run([docker_compose(), subcommand, "--help"])
        assert helped.returncode == 0, f"docker-compose has no {subcommand!r}: {command}"
        for option in options:
            if option.startswith("-"):
                assert re.search(rf"(^|\s|,){re.escape(option)}\b", helped.stdout), command
            else:
                service(option)
    assert seen >= 3


def test_the_root_certificate_is_where_the_readme_takes_it_from(tmp_path: Path) -> None:
    """`docker compose cp caddy:/data/...` (compose v2; docker-compose 1.x has no cp):
    the caddy image keeps its data in /data (XDG_DATA_HOME), where compose mounts the
    caddy-data volume, and Caddy writes its local CA's root to the path given."""
    (line,) = [c for c in COMMANDS if c.startswith("docker compose cp ")]
    source, destination = compose_args(line)[1:]
    name, _, path = source.partition(":")
    mounts = dict((target, src) for src, target in bind_sources(service(name)))
    assert mounts.get("/data") == "caddy-data"
    assert destination == "smartby-root.crt"
    # the layout under XDG_DATA_HOME, as a real Caddy writes it (tests/deploy/caddy.py)
    relative = Path(path).relative_to("/data")
    caddy = Caddy(tmp_path, api_port=free_port(), grafana_port=free_port())
    try:
        assert caddy.root_certificate == tmp_path / "data" / relative
    finally:
        caddy.stop()


@dataclass
class Exec:
    service: str
    program: str
    args: list[str]


def execs() -> list[Exec]:
    found = []
    for command in COMMANDS:
        if command.startswith("docker compose exec "):
            args = compose_args(command)[1:]
            found.append(Exec(args[0], args[1], args[2:]))
    return found


def test_promtool_commands_run_on_the_mounted_files() -> None:
    promtools = [e for e in execs() if e.program == "promtool"]
    assert len(promtools) == 2
    for command in promtools:
        *verb, path = command.args
        local = host_path(command.service, path)
        assert local.is_file(), local
        result = run([tool("promtool"), *verb, str(local)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


class Webhook(BaseHTTPRequestHandler):
    """A receiver of Alertmanager's webhook: keeps what it was sent."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real Alertmanager (Debian's build) on the configuration render.sh writes for
    a webhook receiver, which a local server stands in for."""
    Webhook.received = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config = tmp_path / "alertmanager.yml"
    rendered = run(
        [
            "sh",
            str(ROOT / "deploy/alertmanager/render.sh"),
            str(ROOT / "deploy/alertmanager/alertmanager.yml.tmpl"),
            str(config),
        ],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SMARTBY_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/alerts",
        },
    )
    assert rendered.returncode == 0, rendered.stderr
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                tool("prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while run(["curl", "-fsS", f"http://127.0.0.1:{port}/-/ready"]).returncode != 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "Alertmanager did not start"
            time.sleep(0.1)
        yield port, config
    finally:
        process.terminate()
        process.wait(20)
        hook.shutdown()
        hook.server_close()


def test_amtool_commands_against_a_real_alertmanager(alertmanager: tuple[int, Path]) -> None:
    port, config = alertmanager
    amtools = [e for e in execs() if e.program == "amtool"]
    assert [e.args[0] for e in amtools] == ["check-config", "alert", "alert"]
    for command in amtools:
        assert command.service == "alertmanager"
        args = list(command.args)
        if args[0] == "check-config":
            # /alertmanager/alertmanager.yml is what render.sh writes at start
            assert args[1] == "/alertmanager/alertmanager.yml"
            assert "/alertmanager/alertmanager.yml" in " ".join(service("alertmanager")["command"])
            args[1] = str(config)
        else:
            url = "--alertmanager.url=http://127.0.0.1:9093"
            assert url in args, "amtool talks to the Alertmanager in its own container"
            args[args.index(url)] = f"--alertmanager.url=http://127.0.0.1:{port}"
        result = run([tool("amtool"), *args])
        assert result.returncode == 0, result.stdout + result.stderr
        if args[:2] == ["alert", "query"]:
            assert "SmartbyTestAlert" in result.stdout
            assert "Test from the README" in result.stdout
    # "reaches the receiver after the group wait (30 s)"
    deadline = time.monotonic() + 90
    while not Webhook.received:
        assert time.monotonic() < deadline, "the webhook never got the test alert"
        time.sleep(0.5)
    (alert,) = Webhook.received[0]["alerts"]
    assert alert["labels"] == {"alertname": "SmartbyTestAlert", "severity": "warning"}
    assert alert["status"] == "firing"
    assert Webhook.received[0]["receiver"] == "operations"


def test_curl_commands_against_caddy_in_front_of_the_api(
    simulated: SimulatedData, tmp_path: Path
) -> None:
    """SMARTBY_SITE=localhost and SMARTBY_TLS=internal, as the README's example; the
    certificate is the one Caddy's internal CA made, copied where `docker compose cp`
    puts it."""
    curls = [c for c in COMMANDS if c.startswith("curl ")]
    assert len(curls) == 3
    api = ApiProcess(simulated.url, tmp_path / "api.log", api_trusted_proxies="127.0.0.1/32")
    caddy = Caddy(tmp_path, api_port=api.port, grafana_port=free_port(), site="localhost")
    try:
        work = tmp_path / "work"
        work.mkdir()
        shutil.copy(caddy.root_certificate, work / "smartby-root.crt")
        outputs = []
        for command in curls:
            assert "https://localhost/" in command
            args = shlex.split(command.replace("https://localhost/", f"{caddy.url}/"))
            result = run(args, cwd=work)
            assert result.returncode == 0, f"{command}: {result.stderr}"
            outputs.append(result.stdout)
        assert json.loads(outputs[0])["meta"]["license"] == "NLOD-2.0"
        assert outputs[1:] == ["200\n", "404\n"]
    finally:
        caddy.stop()
        api.stop()


def test_every_command_is_checked() -> None:
    known = (
        r"cp \.env\.example \.env",
        r"openssl rand -hex 24",
        r"docker compose (config -q|up -d --build|ps)",
        r"docker compose cp caddy:\S+ smartby-root\.crt",
        r"docker compose exec prometheus promtool (check|test) rules \S+",
        r"docker compose exec alertmanager amtool .+",
        r"curl .+ https://localhost/\S+",
    )
    for command in COMMANDS:
        assert any(re.fullmatch(pattern, command) for pattern in known), (
            f"the README's command {command!r} is checked by no test"
        )


def test_the_runbook_covers_every_alert() -> None:
    section = operations_section()
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/smartby.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    grafana = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/alerting/smartby-alerts.yaml").read_text()
    )
    names |= {rule["title"] for group in grafana["groups"] for rule in group["rules"]}
    rows = set(re.findall(r"^\| `(\w+)` \(", section, re.M))
    assert rows == names
